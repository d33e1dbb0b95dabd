//! Two sessions side by side: per case instance, the state change and the duration and
//! result deltas, regressions first.
