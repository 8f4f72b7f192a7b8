"""`spacenav run`: start a node graph (config/*.yaml) in this process."""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        'run', help='start the nodes of a graph config in one process',
        description='Start the enabled nodes of a graph config (config/*.yaml, the same file '
                    'the launch files read) in this process on a multi-threaded executor. '
                    'Arguments are given like launch arguments: name:=value. SIGINT / SIGTERM '
                    'stop it cleanly (exit code 0); a start-up error exits with code 2.')
    parser.add_argument('--config', default='nav',
                        help='graph YAML: a path or a name in the package config/ directory '
                             '(default: nav = config/nav.yaml)')
    parser.add_argument('--exit-when-done', action='store_true',
                        help='exit when a node signals that it is done (e.g. the replay node '
                             'at the end of its bag)')
    parser.add_argument('--bag', metavar='PATH',
                        help='shorthand for bag:=PATH (graphs with a bag argument, e.g. '
                             '--config replay)')
    parser.add_argument('--list-arguments', action='store_true',
                        help='print the graph arguments with defaults and descriptions, then exit')
    parser.add_argument('arguments', nargs='*', metavar='name:=value',
                        help='graph argument overrides, e.g. device:=cuda use_hazard:=false')
    parser.set_defaults(func=run)


def graph_overrides(args, graph) -> dict:
    """name:=value arguments plus the --bag shorthand -> overrides for graph_config.resolve."""
    from spacenav_perception.graph.graph_config import GraphConfigError, parse_overrides
    overrides = parse_overrides(args.arguments)
    if args.bag is not None:
        if 'bag' not in graph.arguments:
            raise GraphConfigError(f'--bag: graph {args.config} has no bag argument')
        overrides['bag'] = args.bag
    return overrides


def run(args) -> int:
    import sys
    from spacenav_perception.graph.graph_config import GraphConfigError, load_graph
    from spacenav_perception.graph.runner import run_graph
    try:
        graph = load_graph(args.config)
        overrides = graph_overrides(args, graph)
    except GraphConfigError as exc:
        print(f'spacenav run: error: {exc}', file=sys.stderr)
        return 2
    if args.list_arguments:
        for arg in graph.arguments.values():
            print(f'{arg.name:20s} {arg.default_text():24s} {arg.description}')
        return 0
    return run_graph(graph, overrides, exit_when_done=args.exit_when_done)
