"""Stand-in for the get-pip.py that ansible-test downloads to put pip into its sanity/units venvs.

ansible-test fetches its bootstrap script from a host this project cannot reach; scripts/ansible-test.sh
copies this file to ansible-test's cache instead. It seeds pip from the interpreter's own ensurepip and then
installs the pinned pip that ansible-test asks for from the package index, as get-pip.py would.
"""

import subprocess
import sys

# get-pip.py's own switches; pip install does not know them and ansible-test wants neither package anyway.
GET_PIP_ONLY = {"--no-setuptools", "--no-wheel"}


def main(argv):
    subprocess.run([sys.executable, "-m", "ensurepip", "--upgrade", "--default-pip"], check=True,
                   stdout=subprocess.DEVNULL)
    args = [a for a in argv if a not in GET_PIP_ONLY]
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", *args], check=True)


if __name__ == "__main__":
    main(sys.argv[1:])
