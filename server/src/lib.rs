//! Spindle's HTTP front end, model manager and the spindle binary.
