"""The git pool: smart HTTP over dulwich's framing, with git's own upload-pack and receive-pack doing the work."""
