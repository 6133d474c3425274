"""A stand-in for tqdm where it is not installed (scripts/gpu_check.py puts this folder on
PYTHONPATH only then): the same calls facnn makes, plain lines instead of bars."""
import sys


class tqdm:
    def __init__(self, iterable=None, desc=None, total=None, disable=False, leave=True,
                 unit="it", initial=0, **kwargs):
        self.iterable, self.desc, self.disable, self.unit = iterable, desc, disable, unit
        self.total = len(iterable) if total is None and hasattr(iterable, "__len__") else total
        self.n = initial

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.n += 1

    def __len__(self):
        return self.total if self.total is not None else len(self.iterable)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def update(self, n=1):
        self.n += n

    def set_postfix(self, *args, **kwargs):
        pass

    def set_postfix_str(self, *args, **kwargs):
        pass

    def set_description(self, *args, **kwargs):
        pass

    def refresh(self):
        pass

    def close(self):
        if not self.disable and self.desc:
            print(f"{self.desc}: {self.n}/{self.total if self.total is not None else '?'} {self.unit}",
                  file=sys.stderr, flush=True)

    @staticmethod
    def write(s, file=None, end="\n", **kwargs):
        print(s, file=file or sys.stdout, end=end, flush=True)


def trange(*args, **kwargs):
    return tqdm(range(*args), **kwargs)
