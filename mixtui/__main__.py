from mixtui.cli import main

raise SystemExit(main())
