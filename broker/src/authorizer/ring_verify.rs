//! JWT signature checks through ring, installed as `jsonwebtoken`'s crypto provider: the same
//! assembly-optimized primitives rustls uses, instead of the pure-Rust RustCrypto backend,
//! which made ES256 and RS256 authorizers the bottleneck of a handshake (measured in
//! BENCHMARKS.md, "Authorizers": 4 196/s with ES256 before). Signing (tests only) and HMAC
//! stay with RustCrypto. The key formats are the ones `jsonwebtoken`'s PEM readers store: an
//! RSA key as PKCS#1 DER, an EC key as its SEC1 point, an Ed25519 key as its 32 bytes.

use std::sync::LazyLock;

use jsonwebtoken::crypto::{rust_crypto, CryptoProvider, JwtVerifier};
use jsonwebtoken::errors::{ErrorKind, Result};
use jsonwebtoken::DecodingKeyKind;
use jsonwebtoken::{Algorithm, DecodingKey};
use ring::signature as sig;

/// The provider: ring for verification, RustCrypto for the rest.
static PROVIDER: LazyLock<CryptoProvider> = LazyLock::new(|| CryptoProvider {
    signer_factory: rust_crypto::DEFAULT_PROVIDER.signer_factory,
    verifier_factory: verifier,
    jwk_utils: rust_crypto::DEFAULT_PROVIDER.jwk_utils.clone(),
});

/// Installs the provider for the process (once; later calls and a provider installed first
/// by someone else leave things as they are).
pub fn install() {
    let _ = CryptoProvider::install_default(&PROVIDER);
}

struct RingVerifier {
    algorithm: Algorithm,
    params: &'static dyn sig::VerificationAlgorithm,
    key: Vec<u8>,
}

impl signature::Verifier<Vec<u8>> for RingVerifier {
    fn verify(&self, msg: &[u8], signature: &Vec<u8>) -> std::result::Result<(), signature::Error> {
        sig::UnparsedPublicKey::new(self.params, &self.key)
            .verify(msg, signature)
            .map_err(|_| signature::Error::new())
    }
}

impl JwtVerifier for RingVerifier {
    fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
}

fn verifier(algorithm: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>> {
    let params: &'static dyn sig::VerificationAlgorithm = match algorithm {
        Algorithm::ES256 => &sig::ECDSA_P256_SHA256_FIXED,
        Algorithm::ES384 => &sig::ECDSA_P384_SHA384_FIXED,
        Algorithm::RS256 => &sig::RSA_PKCS1_2048_8192_SHA256,
        Algorithm::RS384 => &sig::RSA_PKCS1_2048_8192_SHA384,
        Algorithm::RS512 => &sig::RSA_PKCS1_2048_8192_SHA512,
        Algorithm::PS256 => &sig::RSA_PSS_2048_8192_SHA256,
        Algorithm::PS384 => &sig::RSA_PSS_2048_8192_SHA384,
        Algorithm::PS512 => &sig::RSA_PSS_2048_8192_SHA512,
        Algorithm::EdDSA => &sig::ED25519,
        // HMAC, and anything newer: RustCrypto.
        _ => return (rust_crypto::DEFAULT_PROVIDER.verifier_factory)(algorithm, key),
    };
    if key.family() != algorithm.family() {
        return Err(ErrorKind::InvalidAlgorithm.into());
    }
    match key.kind() {
        DecodingKeyKind::SecretOrDer(bytes) => Ok(Box::new(RingVerifier {
            algorithm: *algorithm,
            params,
            key: bytes.clone(),
        })),
        // Keys from (n, e) components (JWKs): RustCrypto.
        _ => (rust_crypto::DEFAULT_PROVIDER.verifier_factory)(algorithm, key),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{decode, encode, EncodingKey, Header, Validation};

    fn claims() -> serde_json::Value {
        serde_json::json!({"sub": "u", "exp": 4_000_000_000u64})
    }

    #[test]
    fn ring_verifies_what_rustcrypto_signed_and_refuses_the_rest() {
        install();
        let cases: [(Algorithm, &[u8], &[u8]); 5] = [
            (
                Algorithm::ES256,
                include_bytes!("testdata/es.key"),
                include_bytes!("testdata/es.pub"),
            ),
            (
                Algorithm::RS256,
                include_bytes!("testdata/rs.key"),
                include_bytes!("testdata/rs.pub"),
            ),
            (
                Algorithm::RS512,
                include_bytes!("testdata/rs.key"),
                include_bytes!("testdata/rs.pub"),
            ),
            (
                Algorithm::PS256,
                include_bytes!("testdata/rs.key"),
                include_bytes!("testdata/rs.pub"),
            ),
            (
                Algorithm::EdDSA,
                include_bytes!("testdata/ed.key"),
                include_bytes!("testdata/ed.pub"),
            ),
        ];
        for (alg, private, public) in cases {
            let encoding = match alg {
                Algorithm::ES256 => EncodingKey::from_ec_pem(private),
                Algorithm::EdDSA => EncodingKey::from_ed_pem(private),
                _ => EncodingKey::from_rsa_pem(private),
            }
            .expect("private key");
            let decoding = match alg {
                Algorithm::ES256 => DecodingKey::from_ec_pem(public),
                Algorithm::EdDSA => DecodingKey::from_ed_pem(public),
                _ => DecodingKey::from_rsa_pem(public),
            }
            .expect("public key");
            let token = encode(&Header::new(alg), &claims(), &encoding).expect("sign");
            let validation = Validation::new(alg);
            assert!(
                decode::<serde_json::Value>(&token, &decoding, &validation).is_ok(),
                "{alg:?}"
            );
            // One flipped bit in the signature: refused.
            let mut bad = token.into_bytes();
            let last = bad.len() - 2;
            bad[last] = if bad[last] == b'A' { b'B' } else { b'A' };
            let bad = String::from_utf8(bad).expect("ascii");
            assert!(
                decode::<serde_json::Value>(&bad, &decoding, &validation).is_err(),
                "{alg:?} accepted a bad signature"
            );
        }
        // The key family must match the algorithm.
        let rsa = DecodingKey::from_rsa_pem(include_bytes!("testdata/rs.pub")).expect("rsa");
        assert!(verifier(&Algorithm::ES256, &rsa).is_err());
    }
}
