# frozen_string_literal: true

module Contract
  # Runs one vector against one sidecar profile: a new client per step from the merged
  # settings, the call or the HTTP request, then every expectation of the step. Problems are
  # collected and returned together, with the step's number.
  class Runner
    include LeaseSteps

    HELLO = ->(_env) { [200, { "content-type" => "text/plain" }, ["ok"]] }

    def initialize(world)
      @world = world
      @current = nil
      # One WEBrick for every middleware step: each step installs its own middleware.
      @app = ->(env) { @current.call(env) }
    end

    def stop
      @server&.close
    end

    def run(vector, profile)
      doc = Contract.with_run(vector.doc, SecureRandom.hex(4))
      port, sidecar, silent = bind(vector.doc["target"], profile)
      wait_for_window(doc["window_s"]) if doc.key?("window_s")
      saved = doc.key?("setup") ? @world.setup(sidecar, doc["setup"]) : {}
      problems = []
      doc["steps"].each_with_index do |raw, i|
        where = "#{vector}#{profile ? "[#{profile}]" : ''} step #{i}"
        step = Contract.with_saved(raw, saved)
        sleep(step["wait_ms"] / 1000.0) if step.key?("wait_ms") # outside the step's time and counters
        kept = run_step(doc, step, port, sidecar, silent, where, problems)
        kept.each { |field, value| saved["#{step['save']}.#{field}"] = value } if step.key?("save")
      end
      problems
    end

    private

    WINDOW_MARGIN = 10 # seconds of a window a vector with window_s needs left to start in it

    # A vector with window_s makes its requests in one epoch-aligned window of that many
    # seconds (the sidecar's fixed windows): when this one is nearly over, in the next.
    def wait_for_window(seconds)
      left = seconds - (Time.now.to_f % seconds)
      sleep(left + 0.05) if left < WINDOW_MARGIN
    end

    def bind(target, profile)
      case target
      when "sidecar", "store_down", "full", "full_budget"
        sidecar = @world.sidecar(profile)
        [sidecar.http_port, sidecar, false]
      when "closed_port" then [Harness.free_port, nil, false]
      when "silent_server" then [@world.silent.port, nil, true]
      else raise "unknown target #{target}"
      end
    end

    # Runs a step and checks it; returns the string fields of its answer (for the step's save).
    def run_step(vector, step, port, sidecar, silent, where, problems)
      kept = {}
      middleware = step.key?("request")
      Contract.check_keys(step, middleware ? MIDDLEWARE_STEP_KEYS : CLIENT_STEP_KEYS, where)
      expect = step.fetch("expect", {})
      Contract.check_keys(expect, middleware ? MIDDLEWARE_EXPECT : CLIENT_EXPECT, "#{where} expect")
      client = client(Contract.settings("client", vector, step), port)
      requests_before = counter(expect, sidecar, where)
      silent_before = silent ? @world.silent.requests : 0
      started = Time.now
      t0 = monotonic
      if middleware
        response = request(Contract.settings("middleware", vector, step), client, step["request"], where)
        elapsed(expect, t0, where, problems)
        check_response(expect, response, where, problems)
      elsif step["call"] == "verifyKey"
        outcome = verify(client, step)
        elapsed(expect, t0, where, problems)
        check_verify(expect, outcome, started, where, problems)
        check_secrets([step["key"], Contract.root_key], outcome, where, problems)
      elsif LEASE_CALLS.include?(step["call"])
        outcome = lease_call(client, step)
        elapsed(expect, t0, where, problems)
        check_lease(expect, outcome, started, where, problems)
        kept = outcome.strings
      else
        outcome = call(client, step, where)
        elapsed(expect, t0, where, problems)
        check_call(expect, step["call"], outcome, started, where, problems)
      end
      check_requests(expect, sidecar, requests_before, where, problems)
      check_silent(expect, silent, silent_before, where, problems)
      kept
    end

    MODES = { "open" => :open, "closed" => :closed }.freeze

    def client(settings, port)
      retry_policy = Viva::RateLimiter::RetryPolicy.new(
        attempts: settings["attempts"], backoff: settings["backoff_ms"] / 1000.0,
        max_backoff: settings["max_backoff_ms"] / 1000.0
      )
      options = { timeout: settings["timeout_ms"] / 1000.0, retry_policy: retry_policy,
                  failure_mode: MODES.fetch(settings["failure_mode"]) }
      # null: the client has none; verify_failure_mode absent: the client's default
      options[:root_key] = settings["root_key"].gsub("{root_key}", Contract.root_key) if settings["root_key"]
      options[:verify_failure_mode] = MODES.fetch(settings["verify_failure_mode"]) if settings.key?("verify_failure_mode")
      Viva::RateLimiter::Client.new(settings["endpoint"].gsub("{port}", port.to_s), **options)
    end

    def monotonic
      Process.clock_gettime(Process::CLOCK_MONOTONIC)
    end

    def counter(expect, sidecar, where)
      return 0 unless expect.key?("sidecar_requests")
      raise "#{where}: sidecar_requests on a target without sidecar" unless sidecar

      @world.request_count(sidecar)
    end

    def check_requests(expect, sidecar, before, where, problems)
      return unless expect.key?("sidecar_requests")

      grew = @world.request_count(sidecar) - before
      return if grew == expect["sidecar_requests"]

      problems << "#{where}: the sidecar counted #{grew} requests, expected #{expect['sidecar_requests']}"
    end

    def check_silent(expect, silent, before, where, problems)
      return unless expect.key?("silent_requests")
      raise "#{where}: silent_requests needs target silent_server" unless silent

      want = expect["silent_requests"]
      # The server's threads see the bytes a moment after the client sent them: give them that
      # moment, then compare exactly.
      deadline = monotonic + 2
      sleep 0.01 while @world.silent.requests - before < want && monotonic < deadline
      got = @world.silent.requests - before
      problems << "#{where}: #{got} requests reached the silent server, expected #{want}" if got != want
    end

    def elapsed(expect, t0, where, problems)
      ms = (monotonic - t0) * 1000
      if expect.key?("min_elapsed_ms") && ms < expect["min_elapsed_ms"]
        problems << "#{where}: took #{ms.round} ms, expected at least #{expect['min_elapsed_ms']}"
      end
      return unless expect.key?("max_elapsed_ms") && ms > expect["max_elapsed_ms"]

      problems << "#{where}: took #{ms.round} ms, expected at most #{expect['max_elapsed_ms']}"
    end

    # -- client steps ----------------------------------------------------------------------

    Outcome = Struct.new(:returned, :result, :error)

    def call(client, step, where)
      name = step["call"]
      raise "#{where}: unknown call #{name.inspect}" unless CALLS.include?(name)

      options = {}
      options[:hits] = step["hits"] if step.key?("hits")
      options[:descriptors] = step["descriptors"] if step.key?("descriptors")
      identifier = step["identifier"]
      namespace = step["namespace"]
      case name
      when "allow" then Outcome.new(client.allow?(identifier, namespace, **options), nil, nil)
      when "check" then Outcome.new(nil, client.check(identifier, namespace, **options), nil)
      else Outcome.new(nil, client.report(identifier, namespace, **options), nil)
      end
    rescue StandardError => e
      Outcome.new(nil, nil, e)
    end

    def check_call(expect, name, outcome, started, where, problems)
      return unless check_error(expect, outcome, where, problems)

      if expect.key?("return")
        only(name, %w[allow], "return", where)
        Match.value(expect["return"], outcome.returned, "#{where} return", problems)
      end
      if expect.key?("result")
        only(name, %w[check report], "result", where)
        Match.value(expect["result"], as_hash(outcome.result, started), "#{where} result", problems)
      end
      if expect.key?("headers")
        only(name, %w[check report], "headers", where)
        Match.headers(expect["headers"], outcome.result.headers.transform_keys(&:downcase),
                      "#{where} headers", problems)
      end
      check_unavailable(expect, name, outcome, where, problems)
    end

    # False when the call raised (nothing else can be checked then).
    def check_error(expect, outcome, where, problems)
      if expect.key?("error")
        Contract.check_keys(expect["error"], %w[kind field], "#{where} error")
        raise "#{where}: unknown error kind #{expect['error']['kind']}" unless expect["error"]["kind"] == "invalid_request"

        if outcome.error.is_a?(Viva::RateLimiter::InvalidRequest)
          Match.value(expect["error"]["field"], outcome.error.field, "#{where} error.field", problems)
        else
          problems << "#{where}: expected InvalidRequest, got #{outcome.error.inspect || outcome.result.inspect}"
        end
        return false
      end
      return true if outcome.error.nil?

      problems << "#{where}: the call raised #{outcome.error.full_message(highlight: false)}"
      false
    end

    def check_unavailable(expect, name, outcome, where, problems)
      result = outcome.result
      if expect.key?("unavailable")
        only(name, %w[check report], "unavailable", where)
        Contract.check_keys(expect["unavailable"], %w[attempts], "#{where} unavailable")
        if result.error.nil?
          problems << "#{where}: expected the failure mode to answer, got #{result.inspect}"
        elsif expect["unavailable"].key?("attempts")
          Match.value(expect["unavailable"]["attempts"], result.attempts, "#{where} unavailable.attempts", problems)
        end
      elsif result&.error
        problems << "#{where}: the sidecar did not answer: #{result.inspect}"
      end
    end

    def only(name, calls, key, where)
      raise "#{where}: '#{key}' is for #{calls.join('/')} steps, this one is #{name}" unless calls.include?(name)
    end

    # The result under the contract's names; reset_at as seconds from the step's start.
    def as_hash(result, started)
      { "allowed" => result.allowed?, "limit" => result.limit, "remaining" => result.remaining,
        "reset_at" => result.reset_at && (result.reset_at - started),
        "reset_after_seconds" => result.reset_after_seconds,
        "retry_after_seconds" => result.retry_after_seconds,
        "window_seconds" => result.window_seconds, "policy" => result.policy,
        "results" => result.results.map { |r| as_hash(r, started) } }
    end

    # -- verifyKey steps -------------------------------------------------------------------

    VerifyOutcome = Struct.new(:verdict, :error, :texts)

    def verify(client, step)
      options = {}
      options[:cost] = step["cost"] if step.key?("cost")
      options[:limits] = step["limits"] if step.key?("limits")
      options[:features] = step["features"] if step.key?("features")
      options[:client_address] = step["client_address"] if step.key?("client_address")
      texts = { "client" => client.inspect }
      verdict = client.verify_key(step["key"], **options)
      VerifyOutcome.new(verdict, nil, texts.merge("verdict" => verdict.inspect))
    rescue Viva::RateLimiter::InvalidRequest, Viva::RateLimiter::Unauthorized => e
      VerifyOutcome.new(nil, e, texts.merge("error" => e.full_message(highlight: false)))
    end

    def check_verify(expect, outcome, started, where, problems)
      return check_verify_error(expect["error"], outcome, where, problems) if expect.key?("error")
      return problems << "#{where}: the call raised #{outcome.error.inspect}" if outcome.error

      verdict = outcome.verdict
      if expect.key?("verification")
        Match.value(expect["verification"], verification_hash(verdict, started), "#{where} verification", problems)
      end
      if expect.key?("unavailable")
        Contract.check_keys(expect["unavailable"], %w[attempts], "#{where} unavailable")
        if verdict.error.nil?
          problems << "#{where}: expected the verify failure mode to answer, got #{verdict.inspect}"
        elsif expect["unavailable"].key?("attempts")
          Match.value(expect["unavailable"]["attempts"], verdict.attempts, "#{where} unavailable.attempts", problems)
        end
      elsif verdict.error
        problems << "#{where}: the sidecar did not answer: #{verdict.inspect}"
      end
    end

    def check_verify_error(want, outcome, where, problems)
      Contract.check_keys(want, %w[kind field], "#{where} error")
      case [want["kind"], outcome.error]
      in ["invalid_request", Viva::RateLimiter::InvalidRequest => e]
        Match.value(want["field"], e.field, "#{where} error.field", problems)
      in ["unauthorized", Viva::RateLimiter::Unauthorized]
        nil
      else
        problems << "#{where}: expected an error of kind #{want['kind']}, got " \
                    "#{(outcome.error || outcome.verdict).inspect}"
      end
    end

    def check_secrets(secrets, outcome, where, problems)
      outcome.texts.each do |place, text|
        secrets.each do |secret|
          next if secret.nil? || secret.empty? || !text.include?(secret)

          problems << "#{where}: the #{place} shows a secret: #{text[0, 300]}"
        end
      end
    end

    # The verdict under the contract's names; reset_at as seconds from the step's start.
    def verification_hash(v, started)
      { "valid" => v.valid?, "code" => v.code, "key_id" => v.key_id,
        "customer_id" => v.customer_id, "plan" => v.plan, "features" => v.features.to_a,
        "remaining" => v.remaining, "reset_at" => v.reset_at && (v.reset_at - started),
        "limits" => v.limits.map do |l|
          { "name" => l.name, "limit" => l.limit, "remaining" => l.remaining,
            "reset_at" => l.reset_at - started, "exceeded" => l.exceeded }
        end }
    end

    # -- middleware steps ------------------------------------------------------------------

    def request(settings, client, spec, where)
      Contract.check_keys(spec, REQUEST_KEYS, "#{where} request")
      header_key = "HTTP_#{settings['identifier_header'].upcase.tr('-', '_')}"
      @current = Viva::RateLimiter::Middleware.new(HELLO, client: client, namespace: settings["namespace"],
                                                          identifier: ->(env) { env[header_key] },
                                                          hits: settings["hits"])
      @server ||= RackServer.new(@app)
      Net::HTTP.start("127.0.0.1", @server.port, read_timeout: 30) do |http|
        http.send_request(spec.fetch("method", "GET"), spec.fetch("path", "/hello"), nil,
                          spec.fetch("headers", {}))
      end
    end

    def check_response(expect, response, where, problems)
      Match.value(expect["status"], response.code.to_i, "#{where} status", problems) if expect.key?("status")
      Match.value(expect["body"], response.body.to_s, "#{where} body", problems) if expect.key?("body")
      if expect.key?("json")
        doc = begin
          JSON.parse(response.body.to_s)
        rescue JSON::ParserError
          "(not JSON: #{response.body})"
        end
        Match.value(expect["json"], doc, "#{where} json", problems)
      end
      return unless expect.key?("headers")

      headers = response.each_header.to_h # lower-case names, repeated values joined by ", "
      Match.headers(expect["headers"], headers, "#{where} headers", problems)
    end
  end
end
