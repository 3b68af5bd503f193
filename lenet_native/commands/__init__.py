"""The commands of ``lenet-native``, one module each; lenet_native.cli lists them.

A command is two functions, ``add_arguments(parser)`` (its options, on an argparse parser)
and ``run(args) -> exit code`` (None counts as 0), named in the table ``cli.COMMANDS``
with the one line ``lenet-native --help`` shows. Options several commands share
(``--threads``, ``--head``, ``--data``, ``--weights``) are defined once, in
:mod:`lenet_native.commands.options`. To add a command::

    # lenet_native/commands/hello.py
    from .options import add_threads

    def add_arguments(parser):
        parser.add_argument("--name", default="world")
        add_threads(parser)

    def run(args):
        print(f"hello {args.name}")

    # lenet_native/cli.py, in COMMANDS
    "hello": Command("say hello", hello.add_arguments, hello.run),

A command reports a user error by raising ``options.CommandError`` (or FileNotFoundError /
ValueError / TypeError / OSError): ``lenet-native`` prints it on one line and exits with 2.
"""
