# frozen_string_literal: true

module Contract
  # The lease steps of the runner (acquire_lease, renew_lease, release_lease): the call and what
  # came of it, in the contract's names.
  module LeaseSteps
    # +answer+: the contract's view ("lease" or "released", by +kind+); +outcome+: the result.
    LeaseOutcome = Struct.new(:kind, :answer, :result, :error) do
      # The answer's string fields, for the step's save.
      def strings
        (answer || {}).select { |_, v| v.is_a?(String) }
      end
    end

    def lease_call(client, step)
      ttl = step.key?("ttl_ms") ? step["ttl_ms"] / 1000.0 : nil
      case step["call"]
      when "acquire_lease"
        options = { ttl: ttl }
        options[:descriptors] = step["descriptors"] if step.key?("descriptors")
        lease_outcome(client.acquire_lease(step["identifier"], step["namespace"], **options))
      when "renew_lease" then lease_outcome(client.renew_lease(step["lease_id"], ttl: ttl))
      else
        released = client.release_lease(step["lease_id"])
        LeaseOutcome.new("released", { "released" => released.released?, "active" => released.active,
                                       "limit" => released.limit }, released, nil)
      end
    rescue StandardError => e
      LeaseOutcome.new(nil, nil, nil, e)
    end

    def check_lease(expect, outcome, started, where, problems)
      return unless check_error(expect, outcome, where, problems)

      %w[lease released].each do |key|
        next unless expect.key?(key)
        raise "#{where}: '#{key}' on a step answering #{outcome.kind}" unless key == outcome.kind

        Match.value(expect[key], with_times(outcome.answer, started), "#{where} #{key}", problems)
      end
      result = outcome.result
      if expect.key?("unavailable")
        Contract.check_keys(expect["unavailable"], %w[attempts], "#{where} unavailable")
        if result.error.nil?
          problems << "#{where}: expected the failure mode to answer, got #{result.inspect}"
        elsif expect["unavailable"].key?("attempts")
          Match.value(expect["unavailable"]["attempts"], result.attempts, "#{where} unavailable.attempts", problems)
        end
      elsif result.error
        problems << "#{where}: the sidecar did not answer: #{result.inspect}"
      end
    end

    private

    def lease_outcome(result)
      LeaseOutcome.new("lease", lease_hash(result, whole: true), result, nil)
    end

    # A lease under the contract's names; +whole+: with its id and results (each descriptor's
    # answer has no id of its own). expires_at stays a Time until the step is checked.
    def lease_hash(result, whole:)
      view = { "allowed" => result.allowed?, "active" => result.active, "limit" => result.limit,
               "expires_at" => result.expires_at, "ttl_seconds" => result.ttl_seconds,
               "retry_after_seconds" => result.retry_after_seconds, "policy" => result.policy }
      return view unless whole

      view.merge("lease_id" => result.lease_id,
                 "results" => result.results.map { |r| lease_hash(r, whole: false) })
    end

    # Times as seconds from the step's start, anywhere in +value+.
    def with_times(value, started)
      case value
      when Time then value - started
      when Hash then value.transform_values { |v| with_times(v, started) }
      when Array then value.map { |v| with_times(v, started) }
      else value
      end
    end
  end
end
