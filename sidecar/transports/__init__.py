"""Transports: adapters from a wire to the service (gRPC over grpcio or the fast HTTP/2
server, HTTP /json and friends, REST). Nothing here decides a request."""
