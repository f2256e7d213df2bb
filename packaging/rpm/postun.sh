# sluice %postun (%systemd_postun_with_restart): on upgrade, restart the service.
# /var/lib/sluice is never removed.
systemctl daemon-reload >/dev/null 2>&1 || :
if [ "$1" -ge 1 ]; then
    systemctl try-restart sluice.service >/dev/null 2>&1 || :
fi
