"""What the noxfile runs its sessions with: environment building (:mod:`noxsupport.envs`) and
step scheduling (:mod:`noxsupport.schedule`). Standard library only: it runs in nox's Python."""
