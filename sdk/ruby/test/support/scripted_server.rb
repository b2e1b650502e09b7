# frozen_string_literal: true

require "webrick"

# A real HTTP server (WEBrick) answering from a script: each request takes the next
# [status, body, delay]; for what a sidecar cannot be made to do on cue. +requests+ keeps the
# path, Authorization header and body of each request.
class ScriptedServer
  attr_reader :calls, :requests

  def initialize(steps, port: 0)
    @steps = steps.dup
    @calls = 0
    @requests = []
    @server = WEBrick::HTTPServer.new(BindAddress: "127.0.0.1", Port: port, AccessLog: [],
                                      Logger: WEBrick::Log.new(File::NULL))
    @server.mount_proc("/") do |request, response|
      @calls += 1
      @requests << [request.path, request["Authorization"], request.body]
      status, body, delay = @steps.shift || [500, '{"error": "script ran out"}', 0]
      sleep(delay) if delay&.positive?
      response.status = status
      response["Content-Type"] = "application/json"
      response.body = body
    end
    @thread = Thread.new { @server.start }
  end

  def url
    "http://127.0.0.1:#{@server.config[:Port]}"
  end

  def close
    @server.shutdown
    @thread.join(5)
  end
end
