//! Python module (in progress).
