# frozen_string_literal: true

require "webrick"
begin
  require "rackup" # Rack 3 moved the server handlers to the rackup gem
rescue LoadError
  require "rack"
  require "rack/handler/webrick"
end

# A Rack app served by WEBrick on a free loopback port, in a background thread.
class RackServer
  HANDLER = defined?(Rackup::Handler::WEBrick) ? Rackup::Handler::WEBrick : Rack::Handler::WEBrick

  attr_reader :port

  def initialize(app)
    @port = Harness.free_port
    started = Queue.new
    @thread = Thread.new do
      HANDLER.run(app, Host: "127.0.0.1", Port: @port, AccessLog: [],
                       Logger: WEBrick::Log.new(File::NULL)) do |server|
        @server = server
        started << true
      end
    end
    started.pop
    Harness.wait_until(10, "WEBrick did not listen") do
      TCPSocket.new("127.0.0.1", @port).close
      true
    rescue SystemCallError
      false
    end
  end

  def url
    "http://127.0.0.1:#{@port}"
  end

  def close
    @server&.shutdown
    @thread.join(5)
  end
end
