# sluice %preun (%systemd_preun): on erase, stop and disable the service.
if [ "$1" -eq 0 ]; then
    systemctl --no-reload disable --now sluice.service >/dev/null 2>&1 || :
fi
