//! An in-process fake Kubernetes API server: list + watch with resourceVersion, bookmarks, 410 Gone, dropped connections.
