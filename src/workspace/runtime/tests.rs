//! Tests of the runtime vocabulary: failure reasons, their labels and errors.

use super::*;

const ALL_REASONS: [FailReason; 12] = [
    FailReason::Engine,
    FailReason::ImageMissing,
    FailReason::Exited,
    FailReason::StartTimeout,
    FailReason::NotReady,
    FailReason::Capacity,
    FailReason::NoSuchWorkspace,
    FailReason::NameTaken,
    FailReason::NotOwner,
    FailReason::ShuttingDown,
    FailReason::UnsafeNetwork,
    FailReason::Quota,
];

/// One error of every variant, with the reason and label it must give.
fn every_error() -> Vec<(RuntimeError, FailReason, &'static str)> {
    vec![
        (
            RuntimeError::Engine("connection refused".into()),
            FailReason::Engine,
            "engine",
        ),
        (
            RuntimeError::ImageMissing("roost-echo:test".into()),
            FailReason::ImageMissing,
            "image_missing",
        ),
        (
            RuntimeError::Exited {
                code: 1,
                logs: vec!["boom".into()],
            },
            FailReason::Exited,
            "exited",
        ),
        (
            RuntimeError::StartTimeout(Duration::from_secs(60)),
            FailReason::StartTimeout,
            "start_timeout",
        ),
        (
            RuntimeError::NotReady {
                retry_after: Duration::from_secs(2),
            },
            FailReason::NotReady,
            "not_ready",
        ),
        (
            RuntimeError::AtCapacity("running", Duration::from_secs(5)),
            FailReason::Capacity,
            "capacity",
        ),
        (
            RuntimeError::NoSuchWorkspace,
            FailReason::NoSuchWorkspace,
            "no_such_workspace",
        ),
        (
            RuntimeError::NameTaken("roost-alice".into()),
            FailReason::NameTaken,
            "name_taken",
        ),
        (RuntimeError::NotOwner, FailReason::NotOwner, "not_owner"),
        (RuntimeError::ShuttingDown, FailReason::ShuttingDown, "shutting_down"),
        (
            RuntimeError::UnsafeNetwork("inter-container traffic on".into()),
            FailReason::UnsafeNetwork,
            "unsafe_network",
        ),
        (
            RuntimeError::QuotaUsed {
                resets_at: 1,
                retry_after: Duration::from_secs(60),
            },
            FailReason::Quota,
            "quota",
        ),
    ]
}

#[test]
fn every_error_has_its_reason_and_label() {
    let errors = every_error();
    // One per variant besides StartFailed (tested below).
    assert_eq!(errors.len(), ALL_REASONS.len());
    for (error, reason, label) in errors {
        assert_eq!(error.fail_reason(), reason, "{error:?}");
        assert_eq!(error.reason(), label, "{error:?}");
        assert_eq!(reason.to_string(), label);
        assert_eq!(error.is_not_owner(), reason == FailReason::NotOwner, "{error:?}");
    }
}

#[test]
fn start_failed_carries_the_reason_it_wraps() {
    for reason in ALL_REASONS {
        let error = RuntimeError::StartFailed(reason);
        assert_eq!(error.fail_reason(), reason);
        assert_eq!(error.reason(), reason.as_str());
        assert_eq!(error.is_permanent(), reason.is_permanent());
    }
}

#[test]
fn labels_are_distinct() {
    let mut labels: Vec<_> = ALL_REASONS.iter().map(|r| r.as_str()).collect();
    labels.sort_unstable();
    labels.dedup();
    assert_eq!(labels.len(), ALL_REASONS.len());
}

#[test]
fn only_what_someone_must_fix_is_permanent() {
    let permanent: Vec<_> = ALL_REASONS.into_iter().filter(|r| r.is_permanent()).collect();
    assert_eq!(
        permanent,
        [
            FailReason::ImageMissing,
            FailReason::NameTaken,
            FailReason::UnsafeNetwork
        ]
    );
    for (error, reason, _) in every_error() {
        assert_eq!(error.is_permanent(), reason.is_permanent(), "{error:?}");
    }
    assert!(RuntimeError::ImageMissing("x".into()).is_permanent());
    assert!(!RuntimeError::Engine("x".into()).is_permanent());
    assert!(!RuntimeError::NotOwner.is_permanent());
    assert!(!RuntimeError::AtCapacity("running", Duration::ZERO).is_permanent());
}

#[test]
fn back_offs_match_what_the_caller_is_told() {
    assert_eq!(FailReason::ImageMissing.backoff(), Duration::from_secs(30));
    assert_eq!(FailReason::Capacity.backoff(), Duration::from_secs(2));
    assert_eq!(FailReason::Exited.backoff(), Duration::from_secs(5));
    // Another account's refusal never blocks the owner.
    assert_eq!(FailReason::NotOwner.backoff(), Duration::ZERO);
}
