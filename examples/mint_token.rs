//! Mints an RS256 access token shaped like Auth0's, for benchmarks and
//! local experiments with the test issuer's keys. Never for production.
//!
//! `cargo run --example mint_token -- --key tests/fixtures/keys/k1.pem --kid k1 \
//!     --issuer http://127.0.0.1:9000/ --audience https://roost.test/api --sub alice`

use std::time::{SystemTime, UNIX_EPOCH};

use clap::Parser;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::json;

#[derive(Parser)]
struct Args {
    #[arg(long)]
    key: std::path::PathBuf,
    #[arg(long)]
    kid: String,
    #[arg(long)]
    issuer: String,
    #[arg(long)]
    audience: String,
    #[arg(long)]
    sub: String,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 86_400)]
    ttl: u64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(args.kid);
    let claims = json!({
        "iss": args.issuer,
        "sub": args.sub,
        "aud": [args.audience, format!("{}userinfo", args.issuer)],
        "iat": now,
        "exp": now + args.ttl,
        "scope": "openid profile email",
        "permissions": ["read:workspace"],
        "email": format!("{}@example.com", args.sub),
    });
    let key = EncodingKey::from_rsa_pem(&std::fs::read(&args.key)?)?;
    println!("{}", encode(&header, &claims, &key)?);
    Ok(())
}
