# frozen_string_literal: true

module Viva
  module RateLimiter
    VERSION = "0.1.0"
  end
end
