//! Memory the sources may hold for senders: bytes read but not yet a whole
//! message (or request), per connection and across all of them. A hostile or
//! stalled sender runs into its own bound and is cut off; it cannot starve
//! the others of memory for longer than one message's deadline.

use anyhow::{Result, bail};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Accounted in pieces of this size, so a permit covers a read buffer's growth.
const UNIT: usize = 64 << 10;

/// The bounds shared by every connection of a run.
#[derive(Clone, Debug)]
pub struct Budget {
    pool: Arc<Semaphore>,
    /// Bytes one connection may hold unfinished.
    pub per_connection: usize,
    /// How long a message (or request) may take from its first byte to its
    /// last: a sender trickling one keeps its memory no longer than this.
    pub message_deadline: Duration,
}

impl Budget {
    pub fn new(total: usize, per_connection: usize, message_deadline: Duration) -> Budget {
        let units = total.div_ceil(UNIT).clamp(1, Semaphore::MAX_PERMITS);
        Budget {
            pool: Arc::new(Semaphore::new(units)),
            per_connection: per_connection.min(total).max(UNIT),
            message_deadline,
        }
    }

    /// A connection's share, empty to begin with.
    pub fn holding(&self) -> Holding {
        Holding {
            budget: self.clone(),
            permit: None,
        }
    }
}

/// What one connection holds of the budget.
pub struct Holding {
    budget: Budget,
    permit: Option<OwnedSemaphorePermit>,
}

impl Holding {
    fn units(&self) -> usize {
        self.permit.as_ref().map_or(0, |p| p.num_permits())
    }

    /// Makes the holding cover `bytes`: gives back what is no longer needed,
    /// or takes more, waiting for others to give some back until `deadline`.
    /// Fails past the per-connection bound, or when the pool stays full.
    pub async fn cover(&mut self, bytes: usize, deadline: tokio::time::Instant) -> Result<()> {
        if bytes > self.budget.per_connection {
            bail!(
                "{bytes} bytes unfinished, over the {}-byte per-connection budget (--connection-budget-mib)",
                self.budget.per_connection
            );
        }
        let want = bytes.div_ceil(UNIT);
        let have = self.units();
        if want < have {
            if want == 0 {
                self.permit = None;
            } else if let Some(permit) = self.permit.as_mut() {
                drop(permit.split(have - want));
            }
            return Ok(());
        }
        if want == have {
            return Ok(());
        }
        let more = (want - have) as u32;
        let pool = self.budget.pool.clone();
        let got = match pool.clone().try_acquire_many_owned(more) {
            Ok(p) => p,
            Err(_) => {
                match tokio::time::timeout_at(deadline, pool.acquire_many_owned(more)).await {
                    Ok(Ok(p)) => p,
                    _ => bail!(
                        "the sources' memory budget (--input-budget-mib) stayed full for as long as a message may take"
                    ),
                }
            }
        };
        match self.permit.as_mut() {
            Some(permit) => permit.merge(got),
            None => self.permit = Some(got),
        }
        Ok(())
    }
}

/// Expands gzip (one member or several) to at most `cap` bytes: a bomb is
/// stopped at the cap, never expanded whole.
pub fn gunzip_within(packed: &[u8], cap: usize) -> Result<Vec<u8>> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(packed)
        .take(cap as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| anyhow::anyhow!("not gzip: {e}"))?;
    if out.len() > cap {
        bail!("gzip that expands beyond {cap} bytes");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_connection_past_its_share_or_a_full_pool_is_refused_and_what_it_held_comes_back() {
        let budget = Budget::new(4 * UNIT, 3 * UNIT, Duration::from_millis(50));
        let soon = || tokio::time::Instant::now() + Duration::from_millis(50);
        let mut a = budget.holding();
        a.cover(3 * UNIT, soon()).await.unwrap();
        assert!(
            a.cover(3 * UNIT + 1, soon()).await.is_err(),
            "over its share"
        );
        let mut b = budget.holding();
        assert!(b.cover(2 * UNIT, soon()).await.is_err(), "the pool is full");
        a.cover(UNIT, soon()).await.unwrap();
        b.cover(2 * UNIT, soon()).await.unwrap();
        drop(a);
        let mut c = budget.holding();
        c.cover(2 * UNIT, soon()).await.unwrap();
    }

    #[test]
    fn gzip_expands_up_to_the_cap_and_no_further() {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&vec![b'a'; 1 << 20]).unwrap();
        let packed = gz.finish().unwrap();
        assert_eq!(gunzip_within(&packed, 1 << 20).unwrap().len(), 1 << 20);
        let e = gunzip_within(&packed, (1 << 20) - 1).unwrap_err();
        assert!(e.to_string().contains("expands beyond"), "{e}");
        assert!(gunzip_within(b"plain", 100).is_err());
    }
}
