//! The HTTP clients' TLS set-up, shared by every adapter that talks HTTPS.

/// reqwest is built with `rustls-no-provider` and rustls with `ring` (no aws-lc-rs C build);
/// rustls needs a process-wide provider before the first client is built.
pub(crate) fn ensure_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing the race to another installer is fine: a provider is installed either way.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}
