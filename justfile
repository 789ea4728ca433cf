# Short aliases for `cargo xtask` recipes; xtask is the single source of truth.

# Everything CI checks.
test:
    cargo xtask test

# Bring up a local cluster, inject faults and watch Nanny heal them.
demo *ARGS:
    cargo xtask demo {{ARGS}}

# Build the Go tools the tests use (cached under ~/.cache/nanny).
tools:
    cargo xtask tools

# Regenerate deploy/crds from the Rust types.
crds:
    cargo xtask crds

# Measure a performance target, e.g. `just bench services`.
bench TARGET *ARGS:
    cargo xtask bench {{TARGET}} {{ARGS}}
