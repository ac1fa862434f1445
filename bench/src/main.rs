//! `minitower-bench <scenario>|all [--out FILE] [--json]`: see `bench/README.md`.

use clap::Parser;
use minitower_bench::{run, Options};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let opts = Options::parse();
    let report = run(&opts).await?;
    if opts.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.markdown());
    }
    if let Some(path) = &opts.out {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, json + "\n")?;
        eprintln!("figures written to {}", path.display());
    }
    Ok(())
}
