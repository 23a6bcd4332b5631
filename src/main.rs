//! The `edgenn` command: see [`edgenn::commands`].

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    edgenn::commands::main().await
}
