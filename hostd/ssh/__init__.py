"""git and hg over SSH: OpenSSH in front, one gateway process behind it (see hostd.ssh.gateway)."""
