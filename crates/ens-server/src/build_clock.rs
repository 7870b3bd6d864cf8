//! The lifecycle clock: whether custom image builds move on by themselves.
//!
//! Running (the default), the background advancer ends each build step when it is due, one
//! step every `--image-build-seconds`. Frozen, nothing moves by itself: the advancer skips
//! its ticks and `CreateImage` holds every new image at `Creating`, even when steps take no
//! time, so that a test can look at each status and move builds on when it chooses, through
//! the control API (`POST /clock/steps`). Wall-clock waits make such tests slow or flaky;
//! a frozen clock makes them exact.
//!
//! The flag lives in this process's memory and starts running: replicas sharing a store
//! each have their own clock, and a running replica goes on advancing every build in the
//! store, whatever the others say.

use std::sync::atomic::{AtomicBool, Ordering};

use ens_domain::{ImageStatus, NewCustomImage};
use time::OffsetDateTime;
use tokio::sync::{Mutex, MutexGuard};

/// Frozen or running; shared by the advancer, `CreateImage` and the control API.
#[derive(Debug, Default)]
pub struct BuildClock {
    frozen: AtomicBool,
    /// Held by the advancer while it moves builds, so that a freeze can wait for it.
    turn: Mutex<()>,
}

impl BuildClock {
    /// Whether builds are held until stepped.
    #[must_use]
    pub fn is_frozen(&self) -> bool {
        self.frozen.load(Ordering::Acquire)
    }

    /// Freezes the clock; returns whether it was frozen already. Returns only once no
    /// advance is under way, so that no build moves by itself after this returns.
    pub async fn freeze(&self) -> bool {
        let was = self.frozen.swap(true, Ordering::AcqRel);
        drop(self.turn.lock().await);
        was
    }

    /// Lets builds move by themselves again; returns whether it was frozen. Due times stay
    /// as they are: the control API also restarts the current step of every build
    /// (`RequestStore::restart_image_builds`), so held builds do not all move at once.
    pub fn unfreeze(&self) -> bool {
        self.frozen.swap(false, Ordering::AcqRel)
    }

    /// The advancer's turn to move due builds, to hold while it does; `None` while frozen.
    pub async fn advancer_turn(&self) -> Option<MutexGuard<'_, ()>> {
        let turn = self.turn.lock().await;
        (!self.is_frozen()).then_some(turn)
    }

    /// `new` as `CreateImage` stores it under this clock: while frozen, an image that would
    /// be born `Available` (steps of no time) starts `Creating` instead, its first step due
    /// at once, so that it waits for a step like any other build. Running, `new` unchanged.
    #[must_use]
    pub fn hold(&self, mut new: NewCustomImage, now: OffsetDateTime) -> NewCustomImage {
        if self.is_frozen() && new.image.status == ImageStatus::Available {
            new.image.status = ImageStatus::Creating;
            new.build_due_at = Some(now);
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ens_domain::{AccountId, CustomImagePlan, CustomImageSource, NodeId, Snapshot};
    use std::time::Duration;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-03-04 05:06:07 UTC);

    fn instant_build() -> NewCustomImage {
        let owner = AccountId::parse("AccountId", "1000000000000001").unwrap();
        let snapshot = Snapshot {
            id: "sp-a".into(),
            owner: owner.clone(),
            node: NodeId::parse("EnsRegionId", "cn-dalian-unicom").unwrap(),
            instance_id: None,
            platform: "centos".into(),
            os_type: "linux".into(),
            os_version: "7.9".into(),
            architecture: "x86_64".into(),
            size_gib: 40,
            build_failure: None,
        };
        NewCustomImage::from_source(
            CustomImageSource::Snapshot(snapshot),
            CustomImagePlan {
                name: "held".into(),
                owner,
                requested_at: NOW,
                build_step: Duration::ZERO,
            },
        )
    }

    #[test]
    fn a_running_clock_leaves_an_instant_build_available() {
        let clock = BuildClock::default();
        let new = clock.hold(instant_build(), NOW);
        assert_eq!(new.image.status, ImageStatus::Available);
        assert_eq!(new.build_due_at, None);
    }

    #[tokio::test]
    async fn a_frozen_clock_holds_an_instant_build_at_creating() {
        let clock = BuildClock::default();
        assert!(!clock.freeze().await);
        let new = clock.hold(instant_build(), NOW);
        assert_eq!(new.image.status, ImageStatus::Creating);
        assert_eq!(new.build_due_at, Some(NOW));
        assert!(clock.advancer_turn().await.is_none());
        assert!(clock.unfreeze());
        assert!(!clock.is_frozen());
        assert!(clock.advancer_turn().await.is_some());
    }
}
