# frozen_string_literal: true

require "erb"
require "json"

module Viva
  module RateLimiter
    # The calls of Client on leases of a concurrency limit (POST /v1/leases, POST
    # /v1/leases/{id}/renew, DELETE /v1/leases/{id}); included in Client, whose retries and
    # failure modes they share.
    module LeaseCalls
      LEASES_PATH = "/v1/leases"

      # Hold a slot of the concurrency limit of +identifier+ (nil with +descriptors+: a slot on
      # each, all or none) in +namespace+. With a block: yields the Lease and releases it when
      # the block ends, whatever happened, and returns the block's value. Without: returns the
      # Lease, renewed in the background until #release. Raises LeaseRefused when every slot is
      # held (or the sidecar is out of reach and the failure mode is :closed; :raise raises
      # SidecarUnavailable); with :open the block runs holding nothing (lease.held? false).
      # +ttl+ (seconds; default and most: the rule's lease_ttl) is how long a dead holder keeps
      # its slot; +renew_every+ overrides a third of it; +on_lost+ is called with the lease when
      # it is lost (see Lease).
      def lease(identifier, namespace, ttl: nil, descriptors: nil, renew_every: nil, on_lost: nil)
        held = Lease.new(self, identifier, namespace, ttl: ttl, descriptors: descriptors,
                                                      renew_every: renew_every, on_lost: on_lost).acquire
        return held unless block_given?

        begin
          yield held
        ensure
          held.release
        end
      end

      # Take a slot (LeaseResult#lease_id) or learn that none is free (allowed? false, with
      # +active+ and +retry_after_seconds+). The failure mode answers when the sidecar cannot.
      def acquire_lease(identifier, namespace, ttl: nil, descriptors: nil)
        doc = check_doc(identifier, namespace, 1, descriptors).tap { |d| d.delete("hits") }
        doc["ttl"] = lease_ttl!(ttl) unless ttl.nil?
        lease_call(:post, LEASES_PATH, JSON.generate(doc))
      end

      # Hold the lease +ttl+ seconds from now (default: as long as at its acquire); allowed? false
      # once it is gone (expired, released, never issued).
      def renew_lease(lease_id, ttl: nil)
        path = lease_path!(lease_id, "/renew")
        lease_call(:post, path, JSON.generate(ttl.nil? ? {} : { "ttl" => lease_ttl!(ttl) }))
      end

      # Free the lease's slots; released? false when it was gone already (or, with +error+, when
      # the sidecar could not be asked: it then expires with its time to live).
      def release_lease(lease_id)
        response, attempts = exchange(lease_path!(lease_id), nil, @headers, method: :delete)
        return ReleaseResult.new(released: false, attempts: attempts) if response.code == "404"

        read(response, attempts) { |doc| ReleaseResult.from_json(doc, attempts: attempts) }
      rescue Unreached => e
        raise SidecarUnavailable.new(e.message, e.attempts) if @failure_mode == :raise

        ReleaseResult.new(released: false, error: e.message, attempts: e.attempts)
      end

      private

      def lease_call(method, path, json)
        response, attempts = exchange(path, json, @headers, method: method)
        return LeaseResult.new(allowed: false, attempts: attempts) if response.code == "404"

        read(response, attempts) { |doc| LeaseResult.from_json(doc, attempts: attempts) }
      rescue Unreached => e
        raise SidecarUnavailable.new(e.message, e.attempts) if @failure_mode == :raise

        LeaseResult.failure(@failure_mode, e.message, e.attempts)
      end

      # A 200's JSON as the block reads it; InvalidRequest for a 400/413; Unreached for any
      # other answer (a 503), or one the block cannot read.
      def read(response, attempts)
        status = response.code.to_i
        doc = json_or_nil(response.body)
        raise invalid(doc, status) if [400, 413].include?(status)

        if status == 200
          begin
            return yield(doc)
          rescue ArgumentError => e
            raise Unreached.new("the sidecar's answer is not a lease: #{e.message}", attempts)
          end
        end
        detail = doc.is_a?(Hash) && doc["error"].is_a?(String) ? doc["error"] : response.body.to_s
        raise Unreached.new("HTTP #{status} from the sidecar: #{detail[0, 200]}", attempts)
      end

      def lease_ttl!(ttl)
        return ttl if ttl.is_a?(Numeric) && ttl >= 0.001

        raise InvalidRequest.new("ttl must be a number of seconds, at least 0.001, not #{ttl.inspect}", "ttl")
      end

      def lease_path!(lease_id, suffix = "")
        "#{LEASES_PATH}/#{ERB::Util.url_encode(text!(lease_id, 'lease_id'))}#{suffix}"
      end
    end
  end
end
