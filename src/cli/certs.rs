//! The `certs` command: a CA and a serving certificate for the webhook Service, and the `caBundle`.

use super::CertsArgs;
use crate::webhook::certs::{ca_bundle, issue, service_names, write};

/// The `certs` command: writes the files, lists them on stderr and prints the `caBundle` on stdout.
pub fn run(args: &CertsArgs) -> anyhow::Result<()> {
    let ca_key = args.out_dir.join("ca.key");
    if ca_key.exists() && !args.force {
        anyhow::bail!(
            "{} exists: refusing to replace the CA (every caBundle trusting it would break); use --force",
            ca_key.display()
        );
    }
    let mut names = service_names(&args.service, &args.namespace);
    names.extend(args.dns.iter().cloned());
    names.extend(args.ips.iter().map(ToString::to_string));
    let issued = issue(&names, args.days)?;
    let files = write(&issued, &args.out_dir)?;
    for file in &files {
        eprintln!("wrote {}", file.display());
    }
    eprintln!("serving certificate for {} (valid {} days); caBundle:", names.join(", "), args.days);
    println!("{}", ca_bundle(&issued));
    Ok(())
}
