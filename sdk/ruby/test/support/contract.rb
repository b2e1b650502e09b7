# frozen_string_literal: true

require "json"
require "securerandom"

# The shared SDK contract (sdk/contract/): contract.json, its rules and vector files, run
# against real processes. Every key is checked against what this runner knows, so that a vector
# using something new fails here instead of being skipped.
module Contract
  VERSION = 4
  ROOT = File.join(Harness::ROOT, "sdk", "contract")
  VECTOR_KEYS = %w[name about target window_s client middleware setup steps].freeze
  CLIENT_STEP_KEYS = %w[call namespace identifier descriptors hits key cost limits features
                        client_address lease_id ttl_ms save wait_ms client expect].freeze
  MIDDLEWARE_STEP_KEYS = %w[request client middleware expect].freeze
  CLIENT_SETTINGS = %w[endpoint timeout_ms attempts backoff_ms max_backoff_ms failure_mode root_key
                       verify_failure_mode].freeze
  MIDDLEWARE_SETTINGS = %w[namespace identifier_header hits].freeze
  CLIENT_EXPECT = %w[return result headers error unavailable verification lease released
                     sidecar_requests silent_requests min_elapsed_ms max_elapsed_ms].freeze
  MIDDLEWARE_EXPECT = %w[status body json headers sidecar_requests silent_requests
                         min_elapsed_ms max_elapsed_ms].freeze
  REQUEST_KEYS = %w[method path headers].freeze
  SETUP_KEYS = %w[method path body save].freeze
  TARGETS = %w[sidecar store_down full full_budget closed_port silent_server].freeze
  LEASE_CALLS = %w[acquire_lease renew_lease release_lease].freeze
  CALLS = %w[allow check report verifyKey].freeze
  SAVED = /\$\{([a-z_]+\.[a-z_]+)\}/.freeze

  Vector = Struct.new(:file, :name, :doc) do
    def to_s = "#{file}/#{name}"
  end

  module_function

  def doc
    @doc ||= JSON.parse(File.read(File.join(ROOT, "contract.json"))).tap do |d|
      raise "contract.json version #{d['version']}; this runner knows #{VERSION}" unless d["version"] == VERSION
    end
  end

  def vectors
    @vectors ||= doc["vector_files"].flat_map do |file|
      JSON.parse(File.read(File.join(ROOT, file)))["vectors"].map do |v|
        check_keys(v, VECTOR_KEYS, "#{file}/#{v['name']}")
        raise "#{file}/#{v['name']}: unknown target #{v['target']}" unless TARGETS.include?(v["target"])
        raise "#{file}/#{v['name']}: setup needs the target full" if v.key?("setup") && v["target"] != "full"

        Vector.new(file, v["name"], v)
      end
    end
  end

  def profiles(target)
    doc["targets"].fetch(target)
  end

  def check_keys(hash, known, where)
    unknown = hash.keys - known
    raise "#{where}: unknown key #{unknown.first.inspect}; this runner knows #{known.join(', ')}" unless unknown.empty?
  end

  # Defaults, then the vector's settings, then the step's, for "client" or "middleware".
  def settings(kind, vector, step)
    merged = doc["#{kind}_defaults"].merge(vector[kind] || {}).merge(step[kind] || {})
    check_keys(merged, kind == "client" ? CLIENT_SETTINGS : MIDDLEWARE_SETTINGS, kind)
    merged
  end

  def with_run(value, token)
    map_strings(value) { |s| s.gsub("${run}", token) }
  end

  # ${NAME.FIELD} replaced by what the setup or an earlier step saved, in every string of +value+.
  def with_saved(value, saved)
    map_strings(value) do |s|
      s.gsub(SAVED) do
        saved.fetch(Regexp.last_match(1)) { |name| raise "${#{name}}: no setup call or earlier step saved it" }
      end
    end
  end

  def map_strings(value, &change)
    case value
    when String then change.call(value)
    when Hash then value.transform_values { |v| map_strings(v, &change) }
    when Array then value.map { |v| map_strings(v, &change) }
    else value
    end
  end

  # The run's root key ({root_key}): the full-mode sidecars register it at start-up.
  def root_key
    @root_key ||= "vroot_contract_#{SecureRandom.hex(16)}"
  end

  # The processes the vectors need, started on first use: redis-server, one sidecar per
  # profile (as contract.json says to start it), the silent server.
  class World
    def initialize
      @sidecars = {}
      @data_dirs = []
    end

    def sidecar(profile)
      @sidecars[profile] ||= start(profile)
    end

    def silent
      @silent ||= Harness::SilentServer.new
    end

    def redis
      @redis ||= Harness::Redis.new
    end

    def stop
      @sidecars.each_value(&:stop)
      @silent&.close
      @redis&.stop
      @data_dirs.each { |dir| FileUtils.rm_rf(dir) }
    end

    # A vector's setup on +sidecar+: each admin call in order, with the run's root key; the
    # string fields of the answers saved as "NAME.FIELD" (sdk/contract/README.md, "Setup").
    def setup(sidecar, requests)
      saved = {}
      requests.each do |raw|
        request = Contract.with_saved(raw, saved)
        Contract.check_keys(request, SETUP_KEYS, "setup")
        response = admin(sidecar, request)
        unless response.code.start_with?("2")
          raise "setup #{request['method']} #{request['path']}: HTTP #{response.code} #{response.body}"
        end
        next unless request["save"]

        JSON.parse(response.body).each { |field, value| saved["#{request['save']}.#{field}"] = value if value.is_a?(String) }
      end
      saved
    end

    # The sidecar's request counter: the samples of the configured metric and labels, summed.
    def request_count(sidecar)
      spec = Contract.doc["sidecar"]["request_counter"]
      text = Net::HTTP.get(URI("#{sidecar.url}#{spec['path']}"))
      text.each_line.sum do |line|
        next 0 unless line.start_with?("#{spec['metric']}{")

        labels = line[/\{(.*)\}/, 1].scan(/(\w+)="((?:[^"\\]|\\.)*)"/).to_h
        matches = spec["labels"].all? { |name, values| values.include?(labels[name]) }
        matches ? Float(line.split.last) : 0
      end
    end

    private

    def admin(sidecar, request)
      Net::HTTP.start("127.0.0.1", sidecar.http_port, read_timeout: 10) do |http|
        body = request.key?("body") ? JSON.generate(request["body"]) : nil
        http.send_request(request["method"], request["path"], body,
                          "Authorization" => "Bearer #{Contract.root_key}",
                          "Content-Type" => "application/json")
      end
    end

    def start(profile)
      sidecar = Contract.doc["sidecar"]
      spec = sidecar["profiles"].fetch(profile)
      http = Harness.free_port
      @data_dirs << Dir.mktmpdir("viva-contract-")
      values = { "rules" => File.expand_path(Contract.doc["rules"], ROOT), "http_port" => http.to_s,
                 "plans" => File.expand_path(Contract.doc["plans"], ROOT),
                 "grpc_port" => Harness.free_port.to_s, "debug_port" => Harness.free_port.to_s,
                 "closed_port" => Harness.free_port.to_s, "data_dir" => @data_dirs.last,
                 "root_key" => Contract.root_key }
      values["redis_port"] = redis.port.to_s if spec["needs_redis"]
      args = sidecar["args"].map { |a| fill(a, values) }
      env = sidecar["env"].merge(spec["env"]).transform_values { |v| fill(v, values) }
      Harness::Sidecar.new(args, env, http, healthy: profile != "store_down")
    end

    def fill(template, values)
      out = values.reduce(template) { |text, (k, v)| text.gsub("{#{k}}", v) }
      raise "unknown placeholder in #{template.inspect}" if out.match?(/\{[a-z_]+\}/)

      out
    end
  end
end

require_relative "contract_match"
require_relative "contract_leases"
require_relative "contract_runner"
