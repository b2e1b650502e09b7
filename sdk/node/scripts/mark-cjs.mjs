// dist/cjs holds CommonJS .js files inside a "type": "module" package: this nested
// package.json tells Node (and TypeScript) so.
import { writeFileSync } from "node:fs";

writeFileSync(new URL("../dist/cjs/package.json", import.meta.url), '{ "type": "commonjs" }\n');
