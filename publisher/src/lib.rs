//! `banyan-publisher`: `banyan-publish` and `banyan-watch`.
