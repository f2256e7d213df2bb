//! ApiVersions over a real socket: every version we list, pipelining, Kafka's v0
//! fallback for a version we do not speak, and connections closed on bad frames.

use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse};
use kafka_protocol::protocol::StrBytes;

use crate::server::*;

fn request_body() -> ApiVersionsRequest {
    ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("sluice-test"))
        .with_client_software_version(StrBytes::from_static_str("1.0"))
}

#[test]
fn every_supported_version_answers_with_the_registry_in_request_order() {
    let node = start(1 << 20);
    let addr = node.addr;
    let mut s = connect(addr);
    // All four versions pipelined on one connection before reading any answer.
    for v in 0..=3i16 {
        send(
            &mut s,
            &request(ApiKey::ApiVersions, v, 100 + i32::from(v), &request_body()),
        );
    }
    for v in 0..=3i16 {
        let (cid, r): (i32, ApiVersionsResponse) =
            response(&mut s, ApiKey::ApiVersions.response_header_version(v), v);
        assert_eq!(cid, 100 + i32::from(v), "answers come in request order");
        assert_eq!(r.error_code, 0);
        let own = r
            .api_keys
            .iter()
            .find(|k| k.api_key == ApiKey::ApiVersions as i16)
            .expect("ApiVersions lists itself");
        assert_eq!((own.min_version, own.max_version), (0, 3));
        assert_eq!(r.api_keys.len(), sluice_net::registry::APIS.len());
    }
}

#[test]
fn a_newer_api_versions_version_gets_the_v0_fallback() {
    let node = start(1 << 20);
    let addr = node.addr;
    let mut s = connect(addr);
    // Version 99 with a v2 header and no body we could decode.
    let mut frame = Vec::new();
    frame.extend_from_slice(&(ApiKey::ApiVersions as i16).to_be_bytes());
    frame.extend_from_slice(&99i16.to_be_bytes());
    frame.extend_from_slice(&7i32.to_be_bytes());
    frame.extend_from_slice(&[0, 0, 0]);
    let mut out = (frame.len() as i32).to_be_bytes().to_vec();
    out.extend_from_slice(&frame);
    send(&mut s, &out);
    let (cid, r): (i32, ApiVersionsResponse) = response(&mut s, 0, 0);
    assert_eq!(cid, 7);
    assert_eq!(r.error_code, 35, "UNSUPPORTED_VERSION");
    assert!(r
        .api_keys
        .iter()
        .any(|k| k.api_key == ApiKey::ApiVersions as i16 && k.max_version == 3));
    // The connection stays usable.
    send(&mut s, &request(ApiKey::ApiVersions, 3, 8, &request_body()));
    let (cid, r): (i32, ApiVersionsResponse) = response(&mut s, 0, 3);
    assert_eq!((cid, r.error_code), (8, 0));
}

#[test]
fn oversized_frames_unknown_apis_and_garbage_close_the_connection() {
    let node = start(1024);
    let addr = node.addr;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("frame over the limit", 1025i32.to_be_bytes().to_vec()),
        ("negative length", (-5i32).to_be_bytes().to_vec()),
        ("unknown api key", {
            let mut f = 8i32.to_be_bytes().to_vec();
            f.extend_from_slice(&[0x27, 0x0f, 0, 0, 0, 0, 0, 1]);
            f
        }),
        ("header shorter than 8 bytes", {
            let mut f = 3i32.to_be_bytes().to_vec();
            f.extend_from_slice(&[0, 18, 0]);
            f
        }),
        ("body that does not decode", {
            // ApiVersions v3 whose client software name claims 100 bytes.
            let mut f = Vec::new();
            f.extend_from_slice(&[0, 18, 0, 3, 0, 0, 0, 9, 0xff, 0xff, 0]);
            f.extend_from_slice(&[101, b'x']);
            let mut out = (f.len() as i32).to_be_bytes().to_vec();
            out.extend_from_slice(&f);
            out
        }),
    ];
    for (what, bytes) in cases {
        let mut s = connect(addr);
        send(&mut s, &bytes);
        assert!(
            read_frame(&mut s).is_none(),
            "{what}: the server should close"
        );
    }
    // The server still serves new connections afterwards.
    let mut s = connect(addr);
    send(&mut s, &request(ApiKey::ApiVersions, 0, 1, &request_body()));
    let (cid, r): (i32, ApiVersionsResponse) = response(&mut s, 0, 0);
    assert_eq!((cid, r.error_code), (1, 0));
}

#[test]
fn v3_refuses_a_client_software_name_outside_kafkas_pattern() {
    let node = start(1 << 20);
    let mut s = connect(node.addr);
    for (i, (name, version, want)) in [
        ("librdkafka", "2.12.1", 0),
        ("confluent-kafka-python", "2.16.1-rdkafka-2.12.1", 0),
        ("has space", "1.0", 42),
        ("-leading-dash", "1.0", 42),
        ("ok", "", 42),
    ]
    .into_iter()
    .enumerate()
    {
        let body = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str(name))
            .with_client_software_version(StrBytes::from_static_str(version));
        let cid = 200 + i as i32;
        send(&mut s, &request(ApiKey::ApiVersions, 3, cid, &body));
        let (got_cid, r): (i32, ApiVersionsResponse) = response(&mut s, 0, 3);
        assert_eq!((got_cid, r.error_code), (cid, want), "{name:?} {version:?}");
        assert!(!r.api_keys.is_empty(), "the APIs are listed either way");
    }
}
