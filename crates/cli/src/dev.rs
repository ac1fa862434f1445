//! `minitower dev`: a whole local MiniTower in one process.

use crate::cli::DevArgs;
use crate::commands::Ctx;
use crate::error::{CliError, CliResult};

pub async fn dev(_ctx: &mut Ctx, _args: DevArgs) -> CliResult<()> {
    Err(CliError::Other("dev is not available yet".into()))
}
