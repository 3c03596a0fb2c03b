"""Where the Switchboard C libraries are: an environment variable, else the
newest build in the repository (.build/debug or .build/release)."""
import glob
import os


def find(filename, env_var):
    env = os.environ.get(env_var)
    if env:
        return env
    root = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
    found = glob.glob(os.path.join(root, ".build", "*", filename)) + glob.glob(os.path.join(root, ".build", "*", "*", filename))
    if not found:
        raise OSError(f"{filename} not found: run `swift build` or set {env_var}")
    return max(found, key=os.path.getmtime)
