//! Key loading, token verification and scope checks.

use std::path::Path;

use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING};
use banyan_moq::coding::{RequestErrorCode, SessionErrorCode, TrackNamespace};
use banyan_moq::message::Token;
use bytes::Bytes;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use url::Url;

use super::*;

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
const NOW: u64 = 1_700_000_000;

fn claims(ns: &str, publish: bool, subscribe: bool) -> Claims {
    Claims {
        sub: Some("tester".into()),
        ns: ns.into(),
        publish,
        subscribe,
        exp: NOW + 60,
        room: None,
        ..Default::default()
    }
}

fn ns(path: &str) -> TrackNamespace {
    TrackNamespace::from_path(path).unwrap()
}

/// A fresh P-256 key as (PKCS#8 private PEM, SEC1 private PEM, public PEM).
fn ec_keys() -> (String, String, String) {
    let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
    let pkcs8 = pair.to_pkcs8v1().unwrap();
    let sec1 = pair.private_key().as_der().unwrap();
    let public = pair.public_key().as_der().unwrap();
    (
        pem::encode(&pem::Pem::new("PRIVATE KEY", pkcs8.as_ref())),
        pem::encode(&pem::Pem::new("EC PRIVATE KEY", sec1.as_ref())),
        pem::encode(&pem::Pem::new("PUBLIC KEY", public.as_ref())),
    )
}

#[test]
fn hs256_round_trip() {
    let auth = Authenticator::from_key(b"  0123456789abcdef0123456789abcdef\n").unwrap();
    assert_eq!(auth.algorithm(), Algorithm::HS256);
    let c = claims("live/show", true, false);
    let token = mint_hs256(&c, SECRET).unwrap();
    assert_eq!(auth.verify_at(&token, NOW), Ok(c.clone()));
    assert_eq!(auth.verify_at(&format!(" {token}\n"), NOW), Ok(c));
}

#[test]
fn es256_round_trip_with_every_key_form() {
    let (pkcs8, sec1, public) = ec_keys();
    let c = claims("", false, true);
    let token = mint_es256(&c, pkcs8.as_bytes()).unwrap();
    for key in [&pkcs8, &sec1, &public] {
        let auth = Authenticator::from_key(key.as_bytes()).unwrap();
        assert_eq!(auth.algorithm(), Algorithm::ES256);
        assert_eq!(auth.verify_at(&token, NOW), Ok(c.clone()), "{key}");
    }
    // A token minted with the SEC1 form verifies with the public key.
    let token = mint_es256(&c, sec1.as_bytes()).unwrap();
    let verifier = Authenticator::from_key(public.as_bytes()).unwrap();
    assert!(!verifier.can_mint());
    assert!(matches!(verifier.mint(&c), Err(KeyError::VerifyOnly)));
    assert_eq!(verifier.verify_at(&token, NOW), Ok(c));
}

#[test]
fn expiry_uses_the_documented_leeway() {
    let auth = Authenticator::hs256(SECRET).unwrap();
    let token = mint_hs256(&claims("a", true, true), SECRET).unwrap();
    let exp = NOW + 60;
    assert!(auth.verify_at(&token, exp).is_ok());
    assert!(auth.verify_at(&token, exp + EXP_LEEWAY_SECS - 1).is_ok());
    assert_eq!(
        auth.verify_at(&token, exp + EXP_LEEWAY_SECS),
        Err(AuthError::Expired)
    );
    assert_eq!(auth.verify(&token), Err(AuthError::Expired), "minted in 2023");
    let mut c = claims("a", true, true);
    c.exp = jsonwebtoken::get_current_timestamp() + 60;
    assert!(auth.verify(&mint_hs256(&c, SECRET).unwrap()).is_ok());
}

#[test]
fn malformed_tokens() {
    let auth = Authenticator::hs256(SECRET).unwrap();
    for bad in [
        "x",
        "a.b.c",
        "....",
        "eyJhbGciOiJub25lIn0.e30.",
        "\u{0}\u{ff}",
        &"a".repeat(MAX_TOKEN_LEN + 1),
    ] {
        assert_eq!(auth.verify_at(bad, NOW), Err(AuthError::Malformed), "{bad:.40}");
    }
    assert_eq!(auth.verify_at("", NOW), Err(AuthError::Missing));
    // Correctly signed, but claims missing / of the wrong type / a bad namespace.
    let key = EncodingKey::from_secret(SECRET);
    let header = Header::new(Algorithm::HS256);
    for body in [
        serde_json::json!({"pub": true, "exp": NOW + 60}),
        serde_json::json!({"ns": "a", "pub": true}),
        serde_json::json!({"ns": "a", "pub": "yes", "exp": NOW + 60}),
        serde_json::json!({"ns": "a//b", "pub": true, "exp": NOW + 60}),
        serde_json::json!({"ns": 5, "exp": NOW + 60}),
    ] {
        let token = jsonwebtoken::encode(&header, &body, &key).unwrap();
        assert_eq!(auth.verify_at(&token, NOW), Err(AuthError::Malformed), "{body}");
    }
    // Unknown claims are ignored.
    let body = serde_json::json!({"ns": "a", "subs": true, "exp": NOW + 60, "iat": NOW, "x": [1]});
    let token = jsonwebtoken::encode(&header, &body, &key).unwrap();
    assert!(auth.verify_at(&token, NOW).is_ok());
}

#[test]
fn bad_signatures() {
    let auth = Authenticator::hs256(SECRET).unwrap();
    let c = claims("live", true, true);
    let other = mint_hs256(&c, b"another-secret-another-secret-!!").unwrap();
    assert_eq!(auth.verify_at(&other, NOW), Err(AuthError::BadSignature));

    // Tampered payload.
    let token = mint_hs256(&c, SECRET).unwrap();
    let mut parts: Vec<&str> = token.split('.').collect();
    let forged = mint_hs256(&claims("", true, true), SECRET).unwrap();
    parts[1] = forged.split('.').nth(1).unwrap();
    assert_eq!(
        auth.verify_at(&parts.join("."), NOW),
        Err(AuthError::BadSignature)
    );

    // The wrong algorithm for the key: an ES256 token to an HS256 relay and back.
    let (pkcs8, _, public) = ec_keys();
    let es = mint_es256(&c, pkcs8.as_bytes()).unwrap();
    assert_eq!(auth.verify_at(&es, NOW), Err(AuthError::BadSignature));
    let es_auth = Authenticator::from_key(public.as_bytes()).unwrap();
    assert_eq!(es_auth.verify_at(&token, NOW), Err(AuthError::BadSignature));
    // Another EC key.
    let (other_pkcs8, _, _) = ec_keys();
    let es_other = mint_es256(&c, other_pkcs8.as_bytes()).unwrap();
    assert_eq!(es_auth.verify_at(&es_other, NOW), Err(AuthError::BadSignature));
}

#[test]
fn scope_checks() {
    let auth = Authenticator::hs256(SECRET).unwrap();
    let viewer = auth
        .verify_at(&mint_hs256(&claims("live/a", false, true), SECRET).unwrap(), NOW)
        .unwrap();
    assert!(viewer.allows(Action::Subscribe, &ns("live/a")));
    assert!(viewer.allows(Action::Subscribe, &ns("live/a/video")));
    assert!(!viewer.allows(Action::Subscribe, &ns("live/ab")));
    assert!(!viewer.allows(Action::Subscribe, &ns("live")));
    assert!(!viewer.allows(Action::Subscribe, &ns("")));
    assert!(!viewer.allows(Action::Subscribe, &ns("other/live/a")));
    assert_eq!(
        viewer.check(Action::Publish, &ns("live/a")),
        Err(AuthError::NotAllowed(Action::Publish))
    );
    assert_eq!(
        viewer.check(Action::Subscribe, &ns("live/b")),
        Err(AuthError::WrongNamespace)
    );

    let admin = claims("", true, true);
    assert!(admin.allows(Action::Publish, &ns("")));
    assert!(admin.allows(Action::Publish, &ns("x/y/z")));
    let slashes = claims("/live/a/", true, false);
    assert!(slashes.allows(Action::Publish, &ns("live/a/b")));
    assert!(!slashes.allows(Action::Subscribe, &ns("live/a/b")));

    let token = mint_hs256(&claims("live/a", false, true), SECRET).unwrap();
    assert_eq!(
        auth.authorize(None, Action::Subscribe, &ns("live/a")),
        Err(AuthError::Missing)
    );
    // `authorize` uses the real clock, so these tokens (from 2023) are expired.
    assert_eq!(
        auth.authorize(Some(&token), Action::Subscribe, &ns("live/a")),
        Err(AuthError::Expired)
    );
}

#[test]
fn error_codes() {
    use AuthError::*;
    for (err, req, sess) in [
        (
            Missing,
            RequestErrorCode::Unauthorized,
            SessionErrorCode::Unauthorized,
        ),
        (
            Malformed,
            RequestErrorCode::MalformedAuthToken,
            SessionErrorCode::MalformedAuthToken,
        ),
        (
            Expired,
            RequestErrorCode::ExpiredAuthToken,
            SessionErrorCode::ExpiredAuthToken,
        ),
        (
            BadSignature,
            RequestErrorCode::Unauthorized,
            SessionErrorCode::Unauthorized,
        ),
        (
            WrongNamespace,
            RequestErrorCode::Unauthorized,
            SessionErrorCode::Unauthorized,
        ),
        (
            NotAllowed(Action::Publish),
            RequestErrorCode::Unauthorized,
            SessionErrorCode::Unauthorized,
        ),
    ] {
        assert_eq!(err.request_code(), req, "{err}");
        assert_eq!(err.session_code(), sess, "{err}");
    }
}

#[test]
fn bad_keys() {
    assert!(matches!(
        Authenticator::from_key(b"short"),
        Err(KeyError::ShortSecret(5))
    ));
    assert!(matches!(
        Authenticator::from_key(b"-----BEGIN PUBLIC KEY-----\ngarbage\n"),
        Err(KeyError::Pem(_))
    ));
    let cert = pem::encode(&pem::Pem::new("CERTIFICATE", vec![1, 2, 3]));
    assert!(matches!(
        Authenticator::from_key(cert.as_bytes()),
        Err(KeyError::Pem(_))
    ));
    let junk = pem::encode(&pem::Pem::new("PRIVATE KEY", vec![1, 2, 3]));
    assert!(matches!(
        Authenticator::from_key(junk.as_bytes()),
        Err(KeyError::Pem(_))
    ));
    assert!(matches!(
        Authenticator::from_file(Path::new("/nonexistent/key")),
        Err(KeyError::Io { .. })
    ));
}

#[test]
fn tokens_from_url_and_parameters() {
    let url = Url::parse("https://relay:4443/moq?x=1&jwt=abc.def.ghi").unwrap();
    assert_eq!(token_from_url(&url).as_deref(), Some("abc.def.ghi"));
    assert_eq!(
        token_from_url(&Url::parse("https://relay/moq?jwt=").unwrap()),
        None
    );
    assert_eq!(token_from_url(&Url::parse("moqt://relay/").unwrap()), None);

    assert_eq!(jwt_from_tokens(&[]), None);
    assert_eq!(jwt_from_tokens(&[Token::UseAlias { token_alias: 1 }]), None);
    let tokens = [
        Token::Delete { token_alias: 3 },
        Token::UseValue {
            token_type: 0,
            token_value: Bytes::from_static(b"a.b.c"),
        },
    ];
    assert_eq!(jwt_from_tokens(&tokens), Some(Ok("a.b.c".to_owned())));
    let register = [Token::Register {
        token_alias: 1,
        token_type: 0,
        token_value: Bytes::from_static(b"r.s.t"),
    }];
    assert_eq!(jwt_from_tokens(&register), Some(Ok("r.s.t".to_owned())));
    let binary = [Token::UseValue {
        token_type: 0,
        token_value: Bytes::from_static(&[0xff, 0xfe]),
    }];
    assert_eq!(jwt_from_tokens(&binary), Some(Err(AuthError::Malformed)));
}
