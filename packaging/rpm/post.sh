# sluice %post: what Fedora's %systemd_post does, after giving the configuration
# to the sluice group. Enablement is left to the presets (RHEL policy).
chgrp sluice /etc/sluice/sluice.toml
# io_uring on (RHEL 9.3 and later turn it off).
/usr/lib/systemd/systemd-sysctl /usr/lib/sysctl.d/60-sluice.conf || :
if [ "$1" -eq 1 ]; then
    systemctl --no-reload preset sluice.service >/dev/null 2>&1 || :
fi
