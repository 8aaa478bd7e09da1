"""The "Dossier" kernel: an IPython kernel that starts with `db`, `%%sql` and `sources()`."""

from ipykernel.kernelapp import IPKernelApp


def main() -> None:
    IPKernelApp.launch_instance(extensions=["dossier_kernel"])


if __name__ == "__main__":
    main()
