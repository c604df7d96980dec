//! The disk's own sequential write + fdatasync rate (what
//! `dd if=/dev/zero of=FILE bs=1M count=N conv=fdatasync` reports).

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

/// Writes `mib` MiB in 1 MiB writes to a file in `dir`, `fdatasync`s it and
/// returns the rate in MB/s (10^6 bytes per second, like `dd`).
pub fn write_rate(dir: &Path, mib: usize) -> anyhow::Result<f64> {
    let path = dir.join("disk-rate.tmp");
    let block = vec![0u8; 1 << 20];
    let start = Instant::now();
    let mut file = File::create(&path)?;
    for _ in 0..mib {
        file.write_all(&block)?;
    }
    file.sync_data()?;
    let secs = start.elapsed().as_secs_f64();
    drop(file);
    std::fs::remove_file(&path)?;
    Ok((mib << 20) as f64 / secs / 1e6)
}
