//! Spindle's model repository: discovers models, configs and integer versions.
