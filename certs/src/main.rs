//! `banyan-certs`: mint development certificates, print their hashes, check operator chains.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use banyan_certs::error::rfc3339;
use banyan_certs::{load_certs, CertHash, CertInfo, DevOptions, Identity};
use clap::{Parser, Subcommand};
use time::OffsetDateTime;

/// Certificates for Banyan relays.
///
/// Development: `banyan-certs dev --out DIR` mints a self-signed ECDSA P-256 certificate valid for
/// at most 14 days, which browsers accept without any CA through WebTransport
/// `serverCertificateHashes`, and native clients accept with `--tls-hash HEX`.
///
/// Production: use a CA-issued chain (e.g. ACME/Let's Encrypt fullchain.pem + privkey.pem) with
/// `--tls-cert/--tls-key`; `banyan-certs check` tells you whether it loads and how long it is valid.
#[derive(Debug, Parser)]
#[command(name = "banyan-certs", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Mint a development certificate: writes DIR/cert.pem, DIR/key.pem (mode 0600) and
    /// DIR/cert.sha256, and prints the SHA-256 of the certificate as the last line of stdout.
    ///
    /// SANs are localhost, 127.0.0.1 and ::1 plus any --name. Validity starts one hour in the
    /// past (clock skew) and lasts --days; browsers refuse hashes of certificates valid longer
    /// than 14 days, so mint a new one (and restart with the new hash) before it expires.
    Dev {
        /// Directory to write into (created if missing). Existing files are replaced.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Validity period in days, 1 to 14.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u8).range(1..=14))]
        days: u8,
        /// Extra subject alternative name (DNS name or IP address); repeatable.
        #[arg(long = "name", value_name = "NAME")]
        names: Vec<String>,
    },
    /// Print the SHA-256 (hex) of the first certificate in a PEM file: the value for
    /// `--tls-hash` and for a browser's `serverCertificateHashes`.
    Hash {
        /// PEM file whose first certificate is the leaf.
        cert: PathBuf,
    },
    /// Check an operator certificate chain and key: both parse, the key matches, the leaf is
    /// valid now. Also says whether browsers would accept it through `serverCertificateHashes`
    /// (only ECDSA P-256 certificates valid <= 14 days qualify; CA-issued chains don't need to).
    Check {
        /// PEM certificate chain, leaf first (e.g. fullchain.pem).
        cert: PathBuf,
        /// PEM private key: PKCS#8, SEC1 or PKCS#1 RSA (e.g. privkey.pem).
        key: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Dev { out, days, names } => dev(&out, days, names),
        Command::Hash { cert } => hash(&cert),
        Command::Check { cert, key } => check(&cert, &key),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("banyan-certs: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn dev(out: &Path, days: u8, names: Vec<String>) -> anyhow::Result<()> {
    let options = DevOptions {
        validity: time::Duration::days(days.into()),
        names,
        ..DevOptions::default()
    };
    let identity = Identity::mint_dev(&options).context("minting development certificate")?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let (cert, key, sha) = (out.join("cert.pem"), out.join("key.pem"), out.join("cert.sha256"));
    identity
        .write_pem(&cert, &key)
        .context("writing certificate and key")?;
    let hash = identity.sha256();
    std::fs::write(&sha, format!("{hash}\n")).with_context(|| format!("writing {}", sha.display()))?;

    let info = identity.info().context("reading back the certificate")?;
    eprintln!(
        "Minted a development certificate (ECDSA P-256, valid {} .. {}) for {}.",
        rfc3339(info.validity.not_before),
        rfc3339(info.validity.not_after),
        info.names.join(", ")
    );
    eprintln!("  certificate: {}", cert.display());
    eprintln!("  private key: {} (mode 0600)", key.display());
    eprintln!("  SHA-256:     {}", sha.display());
    eprintln!(
        "Serve it with --tls-cert {} --tls-key {}.",
        cert.display(),
        key.display()
    );
    eprintln!("Native clients pin it with --tls-hash {hash}; browsers pass the same 32 bytes as");
    eprintln!(
        "serverCertificateHashes: [{{ algorithm: \"sha-256\", value }}] to new WebTransport(url, ...)."
    );
    eprintln!(
        "It expires at {}; mint a new one (the hash changes) before then.",
        rfc3339(info.validity.not_after)
    );
    println!("{hash}");
    Ok(())
}

fn hash(cert: &Path) -> anyhow::Result<()> {
    let chain = load_certs(cert).context("loading certificate")?;
    let leaf = chain.first().context("no certificate")?;
    println!("{}", CertHash::of(leaf));
    Ok(())
}

fn check(cert: &Path, key: &Path) -> anyhow::Result<()> {
    let identity = Identity::load_pem(cert, key).context("loading certificate chain and key")?;
    let info = identity.info().context("parsing the leaf certificate")?;
    let now = OffsetDateTime::now_utc();

    println!("chain:     {} certificate(s)", identity.chain().len());
    println!("subject:   {}", info.subject);
    println!("issuer:    {}", info.issuer);
    println!("names:     {}", info.names.join(", "));
    println!("key:       {}", info.key);
    println!(
        "validity:  {} .. {} ({:.1} days left)",
        rfc3339(info.validity.not_before),
        rfc3339(info.validity.not_after),
        info.validity.remaining(now).as_seconds_f64() / 86_400.0
    );
    println!("sha256:    {}", identity.sha256());
    for (i, der) in identity.chain().iter().enumerate().skip(1) {
        if let Err(err) = CertInfo::parse(der) {
            bail!("certificate {} in the chain: {err}", i + 1);
        }
    }

    identity
        .check_key()
        .context("the private key does not work with this certificate")?;
    println!("key match: yes");

    let problems = info.browser_hash_problems(now);
    if problems.is_empty() {
        println!("browsers:  would accept it through serverCertificateHashes");
    } else {
        println!(
            "browsers:  would not accept it through serverCertificateHashes (fine for a CA-issued chain):"
        );
        for problem in &problems {
            println!("           - {problem}");
        }
    }

    info.validity
        .check(now)
        .context("the certificate is not valid now")?;
    Ok(())
}
