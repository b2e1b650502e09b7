//! The protobuf decoders on untrusted messages: a request or an error, never a panic; a
//! decoded request encodes back without panicking either (the response encoder's inputs are
//! ours, but it must cope with any strings).
#![no_main]

use libfuzzer_sys::fuzz_target;
use viva_native::rls::{Code, CurrentLimit, DescriptorStatus, RateLimitResponse, Unit};
use viva_native::wire::proto::{decode_health_check_request, decode_rate_limit_request,
                               encode_rate_limit_response};

fuzz_target!(|data: &[u8]| {
    let _ = decode_health_check_request(data);
    let Ok(request) = decode_rate_limit_request(data) else { return };
    let statuses = request.descriptors.iter().map(|d| DescriptorStatus {
        code: Code::Ok,
        current_limit: d.limit.as_ref().map(|l| CurrentLimit {
            name: d.entries.first().map(|e| e.0.clone()).unwrap_or_default(),
            requests_per_unit: l.requests_per_unit,
            unit: Unit::from_wire(l.unit as u64).unwrap_or(Unit::Unknown),
        }),
        limit_remaining: request.hits_addend,
        reset_ms: d.hits_addend.unwrap_or(0),
    }).collect();
    let response = RateLimitResponse { overall_code: Code::Ok, statuses,
                                       response_headers_to_add: vec![(request.domain, String::new())] };
    let mut out = Vec::new();
    encode_rate_limit_response(&response, &mut out);
});
