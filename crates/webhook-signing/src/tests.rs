use super::*;

/// Standard Webhooks / svix worked example.
const SVIX_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const SVIX_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
const SVIX_TS: i64 = 1_614_265_330;
const SVIX_BODY: &[u8] = br#"{"test": 2432232314}"#;
const SVIX_SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

const TOLERANCE: i64 = 300;

fn key(secret: &str) -> SigningKey {
    SigningKey::from_secret(secret).expect("valid secret")
}

/// HMAC-SHA256 computed directly with the `hmac`/`sha2` crates.
fn raw_hmac(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

/// Independent lowercase hex (not the crate's encoder).
fn reference_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// ---- Standard Webhooks known answer ----

#[test]
fn svix_example_signs() {
    let k = key(SVIX_SECRET);
    assert_eq!(standard_signature(&k, SVIX_ID, SVIX_TS, SVIX_BODY), SVIX_SIG);

    let signer = Signer::new(vec![k]).expect("one key");
    let headers = signer.sign(SVIX_ID, SVIX_TS, SVIX_BODY);
    assert_eq!(headers.standard_signature, SVIX_SIG);
}

#[test]
fn svix_example_verifies() {
    let verifier = Verifier::from_secret(SVIX_SECRET).expect("valid secret");
    assert_eq!(
        verifier.verify_standard(SVIX_ID, &SVIX_TS.to_string(), SVIX_SIG, SVIX_BODY, SVIX_TS, TOLERANCE),
        Ok(())
    );
    // Clock skew within tolerance, either direction.
    for now in [SVIX_TS - TOLERANCE, SVIX_TS + TOLERANCE] {
        assert_eq!(verifier.verify_standard(SVIX_ID, "1614265330", SVIX_SIG, SVIX_BODY, now, TOLERANCE), Ok(()));
    }
}

// ---- key derivation ----

#[test]
fn whsec_secret_uses_decoded_bytes() {
    let decoded = BASE64.decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("valid base64");
    let expected = raw_hmac(&decoded, b"1614265330.hello");
    let got = crm_signature(&key(SVIX_SECRET), SVIX_TS, b"hello");
    assert_eq!(got, format!("sha256={}", reference_hex(&expected)));

    // And not the UTF-8 bytes of the whole secret string.
    let wrong = raw_hmac(SVIX_SECRET.as_bytes(), b"1614265330.hello");
    assert_ne!(got, format!("sha256={}", reference_hex(&wrong)));
}

#[test]
fn plain_secret_uses_utf8_bytes() {
    let secret = "my-plain-secret";
    let expected = raw_hmac(secret.as_bytes(), b"msg_1.1700000000.{\"a\":1}");
    let got = standard_signature(&key(secret), "msg_1", 1_700_000_000, br#"{"a":1}"#);
    assert_eq!(got, format!("v1,{}", BASE64.encode(expected)));
}

#[test]
fn whsec_with_invalid_base64_is_an_error() {
    for secret in ["whsec_not*base64!", "whsec_abc", "whsec_MfKQ9r8G KYqrTw"] {
        let err = SigningKey::from_secret(secret).expect_err(secret);
        assert_eq!(err, KeyError::InvalidBase64);
        assert!(!err.to_string().contains(secret));
    }
    assert!(matches!(Verifier::from_secret("whsec_%%%%"), Err(KeyError::InvalidBase64)));
}

#[test]
fn empty_secrets_are_errors() {
    assert_eq!(SigningKey::from_secret("").expect_err("empty"), KeyError::EmptySecret);
    assert_eq!(SigningKey::from_secret("whsec_").expect_err("empty"), KeyError::EmptySecret);
}

#[test]
fn signer_requires_a_key() {
    assert_eq!(Signer::new(vec![]).expect_err("no keys"), KeyError::NoKeys);
}

#[test]
fn generated_secret_round_trips() {
    let random = [7u8; 24];
    let secret = generate_secret(random);
    assert!(secret.starts_with("whsec_"));
    assert_eq!(secret.len(), "whsec_".len() + 32);
    // The key is exactly the random bytes.
    let expected = raw_hmac(&random, b"1.x");
    assert_eq!(crm_signature(&key(&secret), 1, b"x"), format!("sha256={}", reference_hex(&expected)));
}

#[test]
fn debug_does_not_leak_the_key() {
    let secret = "my-plain-secret";
    let k = key(secret);
    let debug = format!("{k:?}");
    assert_eq!(debug, "SigningKey(***)");
    assert!(!debug.contains(secret));
    assert_eq!(format!("{k:#?}"), "SigningKey(***)");

    let k = key(SVIX_SECRET);
    let signer = Signer::new(vec![k.clone()]).expect("one key");
    let verifier = Verifier::new(vec![k]);
    let decoded = BASE64.decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("valid base64");
    for text in [format!("{signer:?}"), format!("{verifier:?}")] {
        assert!(text.contains("SigningKey(***)"), "{text}");
        assert!(!text.contains("MfKQ9r8"), "{text}");
        assert!(!text.contains(&format!("{decoded:?}")), "{text}");
        assert!(!text.contains(&reference_hex(&decoded)), "{text}");
    }
}

// ---- crm scheme ----

#[test]
fn crm_known_answer() {
    let secret = "crm-test-secret";
    let body = br#"{"event":"contact.created","id":42}"#;
    let ts = 1_700_000_123_i64;
    let mut message = b"1700000123.".to_vec();
    message.extend_from_slice(body);
    let expected = format!("sha256={}", reference_hex(&raw_hmac(secret.as_bytes(), &message)));

    let got = crm_signature(&key(secret), ts, body);
    assert_eq!(got, expected);
    let hex_part = got.strip_prefix("sha256=").expect("prefix");
    assert_eq!(hex_part.len(), 64);
    assert!(hex_part.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));

    let signer = Signer::new(vec![key(secret)]).expect("one key");
    assert_eq!(signer.sign("msg_x", ts, body).crm_signature, expected);

    let verifier = Verifier::from_secret(secret).expect("valid");
    assert_eq!(verifier.verify_crm("1700000123", &expected, body, ts + 10, TOLERANCE), Ok(()));
}

#[test]
fn hex_round_trip() {
    let bytes: Vec<u8> = (0..=255).collect();
    let encoded = hex::encode(&bytes);
    assert_eq!(encoded, reference_hex(&bytes));
    assert_eq!(hex::decode(&encoded), Some(bytes.clone()));
    assert_eq!(hex::decode(&encoded.to_uppercase()), Some(bytes));
    assert_eq!(hex::decode("abc"), None);
    assert_eq!(hex::decode("zz"), None);
}

// ---- rotation ----

#[test]
fn rotation_signs_with_both_keys_new_first() {
    let new = key("whsec_bmV3LWtleS1uZXcta2V5LW5ldy1rZXk=");
    let old = key("old-plain-secret");
    let signer = Signer::new(vec![new.clone(), old.clone()]).expect("keys");
    let (id, ts, body) = ("msg_rot", 1_700_000_000_i64, b"payload".as_slice());
    let headers = signer.sign(id, ts, body);

    assert_eq!(headers.crm_signature, format!("{} {}", crm_signature(&new, ts, body), crm_signature(&old, ts, body)));
    assert_eq!(
        headers.standard_signature,
        format!("{} {}", standard_signature(&new, id, ts, body), standard_signature(&old, id, ts, body))
    );

    let ts_s = ts.to_string();
    for (name, verifier) in [
        ("old only", Verifier::new(vec![old.clone()])),
        ("new only", Verifier::new(vec![new.clone()])),
        ("both", Verifier::new(vec![old, new])),
    ] {
        assert_eq!(verifier.verify_crm(&ts_s, &headers.crm_signature, body, ts, TOLERANCE), Ok(()), "{name}");
        assert_eq!(
            verifier.verify_standard(id, &ts_s, &headers.standard_signature, body, ts, TOLERANCE),
            Ok(()),
            "{name}"
        );
    }

    let unrelated = Verifier::from_secret("unrelated").expect("valid");
    assert_eq!(
        unrelated.verify_crm(&ts_s, &headers.crm_signature, body, ts, TOLERANCE),
        Err(VerifyError::NoMatchingSignature)
    );
    assert_eq!(
        unrelated.verify_standard(id, &ts_s, &headers.standard_signature, body, ts, TOLERANCE),
        Err(VerifyError::NoMatchingSignature)
    );

    let empty = Verifier::new(vec![]);
    assert_eq!(
        empty.verify_crm(&ts_s, &headers.crm_signature, body, ts, TOLERANCE),
        Err(VerifyError::NoMatchingSignature)
    );
}

// ---- rejections ----

struct Fixture {
    verifier: Verifier,
    headers: SignatureHeaders,
}

const ID: &str = "msg_fixture";
const TS: i64 = 1_700_000_000;
const TS_S: &str = "1700000000";
const BODY: &[u8] = br#"{"hello":"world"}"#;

fn fixture() -> Fixture {
    let k = key("fixture-secret");
    let headers = Signer::new(vec![k.clone()]).expect("key").sign(ID, TS, BODY);
    Fixture { verifier: Verifier::new(vec![k]), headers }
}

#[test]
fn tampered_body_fails() {
    let f = fixture();
    let tampered = br#"{"hello":"World"}"#;
    assert_eq!(
        f.verifier.verify_crm(TS_S, &f.headers.crm_signature, tampered, TS, TOLERANCE),
        Err(VerifyError::NoMatchingSignature)
    );
    assert_eq!(
        f.verifier.verify_standard(ID, TS_S, &f.headers.standard_signature, tampered, TS, TOLERANCE),
        Err(VerifyError::NoMatchingSignature)
    );
    // Tampered id or timestamp also fails (timestamp still within tolerance).
    assert_eq!(
        f.verifier.verify_standard("msg_other", TS_S, &f.headers.standard_signature, BODY, TS, TOLERANCE),
        Err(VerifyError::NoMatchingSignature)
    );
    assert_eq!(
        f.verifier.verify_crm("1700000001", &f.headers.crm_signature, BODY, TS, TOLERANCE),
        Err(VerifyError::NoMatchingSignature)
    );
}

#[test]
fn timestamp_outside_tolerance_fails() {
    let f = fixture();
    for now in [TS + TOLERANCE + 1, TS - TOLERANCE - 1, i64::MAX, i64::MIN] {
        assert_eq!(
            f.verifier.verify_crm(TS_S, &f.headers.crm_signature, BODY, now, TOLERANCE),
            Err(VerifyError::TimestampOutOfTolerance),
            "now={now}"
        );
        assert_eq!(
            f.verifier.verify_standard(ID, TS_S, &f.headers.standard_signature, BODY, now, TOLERANCE),
            Err(VerifyError::TimestampOutOfTolerance),
            "now={now}"
        );
    }
}

#[test]
fn non_numeric_timestamp_fails() {
    let f = fixture();
    for ts in ["abc", "1700000000.0", "0x1", "+1700000000", "01700000000", "1e9"] {
        assert_eq!(
            f.verifier.verify_crm(ts, &f.headers.crm_signature, BODY, TS, TOLERANCE),
            Err(VerifyError::BadTimestamp),
            "{ts}"
        );
        assert_eq!(
            f.verifier.verify_standard(ID, ts, &f.headers.standard_signature, BODY, TS, TOLERANCE),
            Err(VerifyError::BadTimestamp),
            "{ts}"
        );
    }
}

#[test]
fn unknown_version_tokens_are_ignored() {
    let f = fixture();
    let b64 = f.headers.standard_signature.strip_prefix("v1,").expect("v1 prefix");
    // Only unknown versions: fails, even when the MAC itself is right.
    for header in ["v2,xxx", &format!("v2,{b64}"), "v1a,xxx v2,yyy"] {
        assert_eq!(
            f.verifier.verify_standard(ID, TS_S, header, BODY, TS, TOLERANCE),
            Err(VerifyError::NoMatchingSignature),
            "{header}"
        );
    }
    // Unknown or malformed tokens next to a valid one are skipped.
    let mixed = format!("v2,xxx v1,!!! garbage  {}", f.headers.standard_signature);
    assert_eq!(f.verifier.verify_standard(ID, TS_S, &mixed, BODY, TS, TOLERANCE), Ok(()));

    let hex_sig = f.headers.crm_signature.strip_prefix("sha256=").expect("prefix");
    assert_eq!(
        f.verifier.verify_crm(TS_S, &format!("sha1={hex_sig}"), BODY, TS, TOLERANCE),
        Err(VerifyError::NoMatchingSignature)
    );
    let mixed = format!("sha1=abcd sha256=zz {}", f.headers.crm_signature);
    assert_eq!(f.verifier.verify_crm(TS_S, &mixed, BODY, TS, TOLERANCE), Ok(()));
}

#[test]
fn truncated_signature_fails() {
    let f = fixture();
    let truncated = &f.headers.crm_signature[..f.headers.crm_signature.len() - 2];
    assert_eq!(f.verifier.verify_crm(TS_S, truncated, BODY, TS, TOLERANCE), Err(VerifyError::NoMatchingSignature));
    assert_eq!(f.verifier.verify_crm(TS_S, "sha256=", BODY, TS, TOLERANCE), Err(VerifyError::NoMatchingSignature));
}

#[test]
fn missing_headers_fail() {
    let f = fixture();
    let crm = &f.headers.crm_signature;
    let std_sig = &f.headers.standard_signature;
    assert_eq!(
        f.verifier.verify_crm("", crm, BODY, TS, TOLERANCE),
        Err(VerifyError::MissingHeader(CRM_TIMESTAMP_HEADER))
    );
    assert_eq!(
        f.verifier.verify_crm(TS_S, "  ", BODY, TS, TOLERANCE),
        Err(VerifyError::MissingHeader(CRM_SIGNATURE_HEADER))
    );
    assert_eq!(
        f.verifier.verify_standard("", TS_S, std_sig, BODY, TS, TOLERANCE),
        Err(VerifyError::MissingHeader(STANDARD_ID_HEADER))
    );
    assert_eq!(
        f.verifier.verify_standard(ID, "", std_sig, BODY, TS, TOLERANCE),
        Err(VerifyError::MissingHeader(STANDARD_TIMESTAMP_HEADER))
    );
    assert_eq!(
        f.verifier.verify_standard(ID, TS_S, "", BODY, TS, TOLERANCE),
        Err(VerifyError::MissingHeader(STANDARD_SIGNATURE_HEADER))
    );
}

#[test]
fn key_len_reports_the_decoded_length() {
    assert_eq!(key_len("whsec_AA=="), Ok(1));
    assert_eq!(key_len(&generate_secret([7u8; 24])), Ok(24));
    assert_eq!(key_len("a-plain-secret-of-24-chr"), Ok(24));
    assert_eq!(key_len("whsec_"), Err(KeyError::EmptySecret));
    assert_eq!(key_len("whsec_%%%"), Err(KeyError::InvalidBase64));
    assert!(key_len("whsec_AA==").unwrap() < MIN_KEY_BYTES);
}

// ---- the request's headers ----

#[test]
fn request_headers_carry_both_schemes_in_the_documented_order() {
    let signer = Signer::new(vec![key(SVIX_SECRET)]).expect("one key");
    let signatures = signer.sign(SVIX_ID, SVIX_TS, SVIX_BODY);
    let facts = RequestFacts { webhook_id: SVIX_ID, event_type: "crm_row.updated", timestamp: SVIX_TS, attempt: 3 };
    let headers = request_headers(&facts, &signatures);
    let names: Vec<&str> = headers.iter().map(|(name, _)| *name).collect();
    assert_eq!(
        names,
        [
            "content-type",
            "x-crm-webhook-id",
            "x-crm-webhook-event",
            "x-crm-webhook-timestamp",
            "x-crm-webhook-signature",
            "x-crm-webhook-attempt",
            "webhook-id",
            "webhook-timestamp",
            "webhook-signature"
        ]
    );
    let get = |name: &str| headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str()).unwrap_or("");
    assert_eq!(get("webhook-signature"), SVIX_SIG);
    assert_eq!(get("x-crm-webhook-attempt"), "3");
    assert_eq!(get("webhook-timestamp"), "1614265330");
    let verifier = Verifier::from_secret(SVIX_SECRET).expect("valid secret");
    let verified = verifier.verify_crm(
        get("x-crm-webhook-timestamp"),
        get("x-crm-webhook-signature"),
        SVIX_BODY,
        SVIX_TS,
        TOLERANCE,
    );
    assert_eq!(verified, Ok(()));
}

#[test]
fn elided_signatures_keep_each_schemes_shape_and_verify_nothing() {
    let elided = SignatureHeaders::elided();
    assert_eq!(elided.crm_signature, "sha256=<elided>");
    assert_eq!(elided.standard_signature, "v1,<elided>");
    let verifier = Verifier::from_secret(SVIX_SECRET).expect("valid secret");
    let ts = SVIX_TS.to_string();
    assert_eq!(
        verifier.verify_crm(&ts, &elided.crm_signature, SVIX_BODY, SVIX_TS, TOLERANCE),
        Err(VerifyError::NoMatchingSignature)
    );
    assert!(USER_AGENT.starts_with("crm-webhook/"));
}
