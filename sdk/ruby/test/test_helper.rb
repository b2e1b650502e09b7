# frozen_string_literal: true

# The tests run against real processes: the sidecar (VIVA_RATELIMIT_BIN, else the repository's
# .venv/bin/viva-ratelimit) and redis-server (VIVA_REDIS_SERVER, else the PATH). When one is
# missing, a test fails under CI and is skipped elsewhere, with the reason.

$LOAD_PATH.unshift(File.expand_path("../lib", __dir__))
require "minitest/autorun"
require "viva/rate_limiter"
require "fileutils"
require "monitor"
require "net/http"
require "socket"
require "tmpdir"

module Harness
  ROOT = File.expand_path("../../..", __dir__)

  module_function

  def ci?
    !ENV.fetch("CI", "").empty? && ENV["CI"].downcase != "false"
  end

  # Fail under CI, else skip the test: raised from a test (or its setup).
  def missing!(test, what)
    test.flunk("#{what} is required in CI but was not found") if ci?
    test.skip("#{what} not found")
  end

  def sidecar_binary
    configured = ENV.fetch("VIVA_RATELIMIT_BIN", "")
    path = configured.empty? ? File.join(ROOT, ".venv/bin/viva-ratelimit") : configured
    File.executable?(path) ? path : nil
  end

  def redis_binary
    configured = ENV.fetch("VIVA_REDIS_SERVER", "")
    return (File.executable?(configured) ? configured : nil) unless configured.empty?

    ENV.fetch("PATH", "").split(File::PATH_SEPARATOR).map { |d| File.join(d, "redis-server") }
       .find { |p| File.executable?(p) }
  end

  def free_port
    server = TCPServer.new("127.0.0.1", 0)
    server.addr[1]
  ensure
    server&.close
  end

  def closed_endpoint
    "http://127.0.0.1:#{free_port}"
  end

  def wait_until(seconds, what)
    deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + seconds
    until yield
      raise "#{what} within #{seconds}s" if Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline

      sleep 0.05
    end
  end

  def rules_dir
    dir = Dir.mktmpdir("viva-rules-")
    File.write(File.join(dir, "api.yaml"), <<~YAML)
      domain: api_requests
      descriptors:
        - key: identifier
          rate_limit: {unit: hour, requests_per_unit: 3}
        - key: identifier
          value: vip
          rate_limit: {unlimited: true}
    YAML
    File.write(File.join(dir, "shop.yaml"), <<~YAML)
      domain: shop
      descriptors:
        - key: user
          rate_limit: {unit: hour, requests_per_unit: 5, name: per_user}
        - key: route
          descriptors:
            - key: method
              rate_limit: {unit: hour, requests_per_unit: 2}
    YAML
    dir
  end

  # A sidecar process on free loopback ports. +args+ and +env+ as given; +http_port+ must be
  # the one in +args+.
  class Sidecar
    attr_reader :http_port

    DEFAULT_ENV = { "HOST" => "127.0.0.1", "GRPC_HOST" => "127.0.0.1", "DEBUG_HOST" => "127.0.0.1",
                    "LOG_LEVEL" => "info", "VIVA_SHUTDOWN_GRACE" => "1s" }.freeze

    # On a rules directory with the defaults above (and +env+ over them).
    def self.start(rules, env = {})
      http = Harness.free_port
      args = ["serve", "--config", rules, "--http-port", http.to_s,
              "--grpc-port", Harness.free_port.to_s, "--debug-port", Harness.free_port.to_s]
      new(args, DEFAULT_ENV.merge(env), http, healthy: true)
    end

    def initialize(args, env, http_port, healthy:)
      binary = Harness.sidecar_binary or raise "no sidecar executable"
      @http_port = http_port
      @log = File.join(Dir.tmpdir, "viva-sidecar-#{Process.pid}-#{http_port}.log")
      @pid = Process.spawn(env, binary, *args, out: @log, err: %i[child out])
      await(healthy)
    end

    def url
      "http://127.0.0.1:#{@http_port}"
    end

    def log
      File.exist?(@log) ? File.read(@log) : ""
    end

    def stop
      return unless @pid

      Process.kill("TERM", @pid)
      deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + 10
      until Process.waitpid(@pid, Process::WNOHANG)
        if Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline
          Process.kill("KILL", @pid)
          Process.waitpid(@pid)
          break
        end
        sleep 0.05
      end
      @pid = nil
      FileUtils.rm_f(@log)
    rescue Errno::ESRCH, Errno::ECHILD
      @pid = nil
    end

    private

    def await(healthy)
      Harness.wait_until(60, "the sidecar was not ready") do
        raise "the sidecar exited before it was ready:\n#{log}" if Process.waitpid(@pid, Process::WNOHANG)

        ready?(healthy)
      end
    rescue StandardError
      stop
      raise
    end

    def ready?(healthy)
      response = Net::HTTP.start("127.0.0.1", @http_port, open_timeout: 1, read_timeout: 2) do |http|
        http.get("/healthcheck")
      end
      !healthy || response.code == "200"
    rescue SystemCallError, Net::OpenTimeout, Net::ReadTimeout, EOFError
      false
    end
  end

  # A throw-away redis-server on a free loopback port, without persistence.
  class Redis
    attr_reader :port

    def initialize
      binary = Harness.redis_binary or raise "no redis-server"
      @port = Harness.free_port
      @dir = Dir.mktmpdir("viva-redis-")
      @pid = Process.spawn(binary, "--port", @port.to_s, "--bind", "127.0.0.1", "--save", "",
                           "--appendonly", "no", "--dir", @dir, out: File::NULL, err: File::NULL)
      Harness.wait_until(20, "redis-server did not listen") do
        TCPSocket.new("127.0.0.1", @port).close
        true
      rescue SystemCallError
        false
      end
    end

    def url
      "redis://127.0.0.1:#{@port}/0"
    end

    def stop
      return unless @pid

      Process.kill("TERM", @pid)
      Process.waitpid(@pid)
      @pid = nil
      FileUtils.rm_rf(@dir)
    rescue Errno::ESRCH, Errno::ECHILD
      @pid = nil
    end
  end

  # Accepts connections, reads what arrives, never answers: a stuck sidecar. Counts the
  # connections a request arrived on (an HTTP client may open spare ones it never uses).
  class SilentServer
    def initialize
      @server = TCPServer.new("127.0.0.1", 0)
      @requests = 0
      @open = []
      @lock = Mutex.new
      @thread = Thread.new do
        loop do
          socket = @server.accept
          @lock.synchronize { @open << socket }
          Thread.new { drain(socket) }
        end
      rescue IOError, SystemCallError
        nil # closed
      end
    end

    def port
      @server.addr[1]
    end

    # Connections on which a request arrived so far.
    def requests
      @lock.synchronize { @requests }
    end

    def close
      @server.close
      @thread.join(2)
      @lock.synchronize { @open.each { |s| s.close unless s.closed? } }
    end

    private

    def drain(socket)
      counted = false
      while socket.readpartial(4096)
        next if counted

        counted = true
        @lock.synchronize { @requests += 1 }
      end
    rescue IOError, SystemCallError
      nil # the client gave up
    end
  end

  # A TCP proxy to +port+ that counts the connections it accepts (to see connection reuse).
  class CountingProxy
    def initialize(port)
      @target = port
      @server = TCPServer.new("127.0.0.1", 0)
      @accepted = 0
      @threads = []
      @acceptor = Thread.new do
        loop do
          client = @server.accept
          @accepted += 1
          @threads << Thread.new { pipe(client) }
        end
      rescue IOError, SystemCallError
        nil
      end
    end

    attr_reader :accepted

    def url
      "http://127.0.0.1:#{@server.addr[1]}"
    end

    def close
      @server.close
      @acceptor.join(2)
      @threads.each { |t| t.kill.join(2) }
    end

    private

    def pipe(client)
      upstream = TCPSocket.new("127.0.0.1", @target)
      back = Thread.new { copy(upstream, client) }
      copy(client, upstream)
      back.join
    ensure
      [client, upstream].compact.each { |s| s.close unless s.closed? }
    end

    def copy(from, to)
      IO.copy_stream(from, to)
      to.close_write
    rescue IOError, SystemCallError
      nil
    end
  end

  # Processes shared by the tests of one run, started on first use, stopped at exit.
  module Shared
    @things = {}
    @lock = Monitor.new # re-entrant: a shared sidecar may need the shared redis

    def self.get(key)
      @lock.synchronize { @things[key] ||= yield }
    end

    Minitest.after_run do
      @things.each_value { |thing| thing.respond_to?(:stop) ? thing.stop : thing.close }
    end
  end
end

# Start shared processes or report them missing (fail under CI, skip elsewhere).
module NeedsServers
  def require_sidecar!
    return if Harness.sidecar_binary

    Harness.missing!(self, "the sidecar executable (set VIVA_RATELIMIT_BIN or run ./scripts/test)")
  end

  def require_redis!
    Harness.missing!(self, "redis-server (set VIVA_REDIS_SERVER or put it on the PATH)") unless Harness.redis_binary
  end

  def sidecar
    require_sidecar!
    Harness::Shared.get(:sidecar) { Harness::Sidecar.start(Harness.rules_dir) }
  end

  def redis
    require_redis!
    Harness::Shared.get(:redis) { Harness::Redis.new }
  end

  # An identifier no other test uses (the sidecar is shared).
  def user
    @user ||= "user-#{name.gsub(/\W/, '')}-#{rand(1 << 32).to_s(16)}"
  end
end
