"""``python -m cnnlab``: the command line, so that ``torchrun -m cnnlab train ...`` starts
one training process per device (and ``cnnlab train --nproc N`` runs its workers this way)."""

from cnnlab.cli import main

if __name__ == "__main__":
    main()
