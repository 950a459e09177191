#!/bin/sh
# Starts Chromium ($LORAMERGE_BENCH_CHROMIUM) without the capability to lower its own niceness.
# Run as root, Chromium sets its renderers' and workers' threads to nice 0 and its I/O and
# compositor threads to nice -8 whatever it was started at, while the CLI it is compared with
# keeps the bench's niceness: under `nice -n 19` on a machine other jobs load, that gave the page
# most of the CPU and the CLI a nineteenth share. Without CAP_SYS_NICE its calls to lower the
# niceness fail and every thread stays where the bench runs.
# Where the capability cannot be dropped (a container without CAP_SETPCAP), Chromium starts as it is.
chromium="${LORAMERGE_BENCH_CHROMIUM:?}"
if setpriv --bounding-set -sys_nice --inh-caps -sys_nice -- true 2>/dev/null; then
  exec setpriv --bounding-set -sys_nice --inh-caps -sys_nice -- "$chromium" "$@"
fi
exec "$chromium" "$@"
