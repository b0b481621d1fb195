from mixtui.cli.main import main

raise SystemExit(main())
