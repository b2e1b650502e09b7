# frozen_string_literal: true

module Contract
  # The contract's matching rules: a JSON literal must be equal; {"between": [lo, hi]} a number
  # in that closed range (a header value is parsed as an integer first); {"matches": re} a
  # string the expression finds; {"absent": true} a header that is not there; lists element by
  # element with the same length; objects key by key.
  module Match
    module_function

    def value(expected, actual, where, problems)
      if matcher?(expected, "between")
        between(expected["between"], actual, where, problems)
      elsif matcher?(expected, "matches")
        unless actual.is_a?(String) && Regexp.new(expected["matches"]).match?(actual)
          problems << "#{where}: #{actual.inspect} does not match #{expected['matches']}"
        end
      elsif matcher?(expected, "absent")
        problems << "#{where}: 'absent' is for headers only"
      elsif expected.is_a?(Hash)
        object(expected, actual, where, problems)
      elsif expected.is_a?(Array)
        list(expected, actual, where, problems)
      elsif !literal_equal?(expected, actual)
        problems << "#{where}: expected #{expected.inspect}, got #{actual.inspect}"
      end
    end

    # +actual+: lower-case name => value.
    def headers(expected, actual, where, problems)
      expected.each do |name, want|
        got = actual[name.downcase]
        at = "#{where}[#{name}]"
        if matcher?(want, "absent")
          problems << "#{at}: expected absent, got #{got.inspect}" if want["absent"] && !got.nil?
        elsif got.nil?
          problems << "#{at}: missing; headers are #{actual}"
        elsif matcher?(want, "between")
          value(want, Integer(got, exception: false) || got, at, problems)
        else
          value(want, got, at, problems)
        end
      end
    end

    def matcher?(expected, key)
      expected.is_a?(Hash) && expected.size == 1 && expected.key?(key)
    end

    def object(expected, actual, where, problems)
      return problems << "#{where}: expected an object, got #{actual.inspect}" unless actual.is_a?(Hash)

      expected.each do |key, want|
        if actual.key?(key)
          value(want, actual[key], "#{where}.#{key}", problems)
        else
          problems << "#{where}.#{key}: no such field in the SDK's result"
        end
      end
    end

    def list(expected, actual, where, problems)
      unless actual.is_a?(Array) && actual.size == expected.size
        return problems << "#{where}: expected #{expected.size} items, got #{actual.inspect}"
      end

      expected.each_with_index { |want, i| value(want, actual[i], "#{where}[#{i}]", problems) }
    end

    def between(range, actual, where, problems)
      lo, hi = range
      return if actual.is_a?(Numeric) && actual >= lo && actual <= hi

      problems << "#{where}: #{actual.inspect} is not in #{range}"
    end

    def literal_equal?(expected, actual)
      return expected == actual if expected.is_a?(Numeric) && actual.is_a?(Numeric)

      expected.nil? ? actual.nil? : expected == actual && expected.class == actual.class
    end
  end
end
