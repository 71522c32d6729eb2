//! `rollcall gen`: writes a synthetic city ([`crate::synth`]) to a directory.

use std::path::PathBuf;

use crate::synth::{DEFAULT_RESIDENTS, generate};

/// Arguments of `rollcall gen`.
#[derive(clap::Args, Debug, Clone)]
pub struct GenArgs {
    /// Residents to generate (the default is the fixture subdistrict).
    #[arg(long, default_value_t = DEFAULT_RESIDENTS)]
    pub residents: u64,
    /// Seed of the generator: the same seed and size give the same files.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Directory to write register.csv, heads.csv and sites.csv into (created if missing).
    #[arg(long)]
    pub out: PathBuf,
}

/// `rollcall gen`: writes the city and prints what it wrote.
pub fn run(args: &GenArgs) -> anyhow::Result<()> {
    let summary = generate(args.residents, args.seed, &args.out, true)?;
    println!(
        "wrote {}: {} residents in {} households; {} subdistricts, {} communities, {} grids, \
         {} compounds, {} bungalow areas, {} markets; {} heads; {} sites",
        args.out.display(),
        summary.residents,
        summary.households,
        summary.subdistricts,
        summary.communities,
        summary.grids,
        summary.compounds,
        summary.bungalow_areas,
        summary.markets,
        summary.heads,
        summary.sites,
    );
    Ok(())
}
