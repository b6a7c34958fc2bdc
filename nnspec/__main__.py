"""`python -m nnspec ...` is the `nnspec` command; torchrun starts workers this way (`torchrun ... -m nnspec train`)."""
from nnspec.cli import main

if __name__ == "__main__":
    main(prog_name="nnspec")
