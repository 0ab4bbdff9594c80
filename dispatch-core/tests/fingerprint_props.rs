//! Properties of normalisation and fingerprinting: no input makes them panic, and messages that
//! differ only in their volatile tokens share a fingerprint. Idempotence is not a property of the
//! original's normalisation (`.https://h/ *,x` → `.https://h/*,x` → `.https://h/*`), so it is not
//! asserted.

use dispatch_core::event::{fingerprint, fingerprint_message, normalize_message};
use proptest::prelude::*;

/// JavaScript's `\s` / `trim()` set.
fn is_js_whitespace(c: char) -> bool {
    matches!(
        c,
        '\t' | '\n' | '\u{0B}' | '\u{0C}' | '\r' | ' ' | '\u{A0}' | '\u{1680}' | '\u{2000}'
            ..='\u{200A}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202F}'
                | '\u{205F}'
                | '\u{3000}'
                | '\u{FEFF}'
    )
}

fn assert_well_formed(source: &str, feature: &str, msg: &str) -> Result<(), TestCaseError> {
    let (normalized, fp) = fingerprint_message(source, feature, msg);
    prop_assert_eq!(&normalized, &normalize_message(msg));
    prop_assert_eq!(&fp, &fingerprint(source, feature, &normalized));
    prop_assert_eq!(fp.as_str().len(), 64);
    prop_assert!(
        fp.as_str()
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    );
    prop_assert!(
        !normalized.starts_with(is_js_whitespace),
        "not trimmed: {:?}",
        normalized
    );
    prop_assert!(
        !normalized.ends_with(is_js_whitespace),
        "not trimmed: {:?}",
        normalized
    );
    Ok(())
}

/// Whitespace the two languages disagree on, stars, and the characters the rules look for.
const ODD_TEXT: &str =
    r"[\s\x{85}\x{180E}\x{200B}\x{FEFF}\x{2028}\x{2029}\x{3000}*$.,:0-9a-fA-FTZ_/+é٣１-]{0,64}";

/// The volatile parts of one message.
#[derive(Debug, Clone)]
struct Tokens {
    uuid: String,
    iso: String,
    unix: String,
    id: String,
    dollar: String,
    ip: String,
    hex: String,
    path: String,
}

fn tokens() -> impl Strategy<Value = Tokens> {
    (
        "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",
        r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:?[0-9]{2})?",
        "[0-9]{10,13}",
        "[0-9]{5,18}",
        r"\$([0-9]{1,3}(,[0-9]{3}){0,3}|[0-9]{1,9})(\.[0-9]{2})?",
        r"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}",
        "[0-9a-fA-F]{64}",
        "/[A-Za-z0-9/_.?=&%~*$é-]{0,40}",
    )
        .prop_map(|(uuid, iso, unix, id, dollar, ip, hex, path)| Tokens {
            uuid,
            iso,
            unix,
            id,
            dollar,
            ip,
            hex,
            path,
        })
}

/// Fixed templates with their normalised form.
fn templates(t: &Tokens) -> [(String, &'static str); 3] {
    let Tokens {
        uuid,
        iso,
        unix,
        id,
        dollar,
        ip,
        hex,
        path,
    } = t;
    [
        (
            format!(
                "Payment {uuid} failed at {iso} (ts {unix}) for order #{id}: charged {dollar} from \
                 {ip}:8443 via https://api.example.com{path} hash {hex}"
            ),
            "Payment * failed at * (ts *) for order #*: charged $* from *:8443 via \
             https://api.example.com/* hash *",
        ),
        (
            format!(
                "\u{FEFF} {uuid} {unix}\u{3000}{id}\u{FEFF}{hex}\t{iso} worker crashed\u{2028}"
            ),
            "* worker crashed",
        ),
        (
            format!(
                r#"{{"user":"{uuid}","at":"{iso}","amount":"{dollar}","ip":"{ip}","order":{id},"url":"http://svc:8080{path} ","ms":{unix}}}"#
            ),
            r#"{"user":"*","at":"*","amount":"$*","ip":"*","order":*,"url":"http://svc:8080/* ","ms":*}"#,
        ),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn never_panics_on_any_text(source in any::<String>(), feature in any::<String>(), msg in any::<String>()) {
        assert_well_formed(&source, &feature, &msg)?;
    }

    #[test]
    fn never_panics_on_whitespace_oddities(msg in ODD_TEXT) {
        assert_well_formed("src", "feat", &msg)?;
    }

    #[test]
    fn volatile_tokens_do_not_change_the_fingerprint(a in tokens(), b in tokens()) {
        for ((msg_a, want), (msg_b, _)) in templates(&a).iter().zip(templates(&b).iter()) {
            let (norm_a, fp_a) = fingerprint_message("billing", "charge-customer", msg_a);
            let (norm_b, fp_b) = fingerprint_message("billing", "charge-customer", msg_b);
            prop_assert_eq!(&norm_a, want, "message {:?}", msg_a);
            prop_assert_eq!(&norm_b, want, "message {:?}", msg_b);
            prop_assert_eq!(fp_a, fp_b);
        }
    }
}
