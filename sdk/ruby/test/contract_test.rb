# frozen_string_literal: true

require_relative "test_helper"
require_relative "support/rack_server"
require_relative "support/contract"

# Every vector of sdk/contract (client and middleware) against real sidecar processes (memory
# and Redis stores, a store that is down), a closed port and a silent server; one test each.
class ContractTest < Minitest::Test
  include NeedsServers

  def self.runner
    @runner ||= begin
      world = Contract::World.new
      runner = Contract::Runner.new(world)
      Minitest.after_run do
        runner.stop
        world.stop
      end
      runner
    end
  end

  # Steps of one vector share counters: never run two vectors at once (the request counter is
  # per sidecar), and keep the file's order.
  i_suck_and_my_tests_are_order_dependent!

  Contract.vectors.each do |vector|
    profiles = Contract.profiles(vector.doc["target"])
    (profiles.empty? ? [nil] : profiles).each do |profile|
      label = [vector.file.sub(%r{\Avectors/}, "").sub(/\.json\z/, ""), vector.name, profile].compact
      define_method("test_#{label.join('__')}") do
        require_sidecar!
        require_redis! if profile.to_s.end_with?("redis") || vector.doc["target"] == "store_down"
        problems = self.class.runner.run(vector, profile)
        assert problems.empty?, problems.join("\n")
      end
    end
  end
end
