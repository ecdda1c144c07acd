#!/bin/sh
# Serve the shared root (bind-mounted at its own path) over SFTP. The login is root when the test runs as root;
# otherwise the user `share` with the test's uid and gid (SHARE_UID, SHARE_GID), so that what the nodes' tasks write
# belongs to the same user as with a bind mount.
set -eu
if [ "${SHARE_UID:-0}" != 0 ]; then  # -o: the uid or gid may already have a name in the image
    getent group share >/dev/null || groupadd -o -g "${SHARE_GID:?}" share
    getent passwd share >/dev/null || useradd -o -M -d / -s /bin/sh -u "$SHARE_UID" -g "$SHARE_GID" share
    usermod -p '*' share  # no password, yet not locked (sshd refuses a locked account even its keys)
fi
chmod 600 /etc/cluster-share/host_key
chmod 644 /etc/cluster-share/authorized_keys
chmod 755 /etc/cluster-share
/usr/sbin/sshd -t -f /etc/ssh/sshd_config_share
exec /usr/sbin/sshd -D -e -f /etc/ssh/sshd_config_share
