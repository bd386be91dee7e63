// The cluster web UI: four pages (cluster, resource groups, queries, one
// query), each polling its JSON under `api/` (relative: the page is
// `/ui/`). The DOM is built with createElement and textContent only: query
// text, user names and group ids are user input.
'use strict';

(() => {
  const POLL_MS = 1000;
  const SLOW_POLL_MS = 5000;
  const STATES = ['QUEUED', 'RUNNING', 'FINISHING', 'FINISHED', 'FAILED'];
  const DASH = '\u2014';
  // The group filter's value for queries without a group (no group id
  // starts with a space).
  const NO_GROUP = ' (no group)';

  // ---------------------------------------------------------------- DOM

  /** An element: `props` are attributes, except `class`, `data` (the
   * dataset), `style` (assigned to el.style) and `on` (listeners). */
  function h(tag, props, ...children) {
    const el = document.createElement(tag);
    if (props) {
      for (const [k, v] of Object.entries(props)) {
        if (v === null || v === undefined || v === false) continue;
        if (k === 'class') el.className = v;
        else if (k === 'data') {
          for (const [dk, dv] of Object.entries(v)) el.dataset[dk] = String(dv);
        } else if (k === 'style') Object.assign(el.style, v);
        else if (k === 'on') {
          for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
        } else el.setAttribute(k, v === true ? '' : String(v));
      }
    }
    add(el, children);
    return el;
  }

  function add(el, children) {
    for (const c of children) {
      if (c === null || c === undefined || c === false) continue;
      if (Array.isArray(c)) add(el, c);
      else if (c instanceof Node) el.appendChild(c);
      else el.appendChild(document.createTextNode(String(c)));
    }
  }

  function table(cls, headers, rows) {
    return h('div', { class: 'table-wrap' },
      h('table', { class: cls },
        h('thead', null, h('tr', null, headers.map((t) =>
          Array.isArray(t) ? h('th', { class: t[1], title: t[2] }, t[0]) : h('th', null, t)))),
        h('tbody', null, rows)));
  }

  function td(field, cls, ...children) {
    return h('td', { class: cls, data: field ? { field } : null }, children);
  }

  /** Text cut with an ellipsis by CSS, whole in its title. */
  function clip(text) {
    return h('span', { class: 'clip', title: text }, text);
  }

  function link(href, text, title) {
    return h('a', { href, title }, text);
  }

  function queryLink(id) {
    return link('#/query/' + encodeURIComponent(id), id);
  }

  function section(title, ...children) {
    return h('section', { class: 'card' }, h('h2', null, title), children);
  }

  function fact(label, ...value) {
    return h('span', { class: 'fact' }, h('span', { class: 'fact-label' }, label), ' ', value);
  }

  function note(...children) {
    return h('p', { class: 'note' }, children);
  }

  // --------------------------------------------------------- formatting

  function fmtBytes(n) {
    if (n === null || n === undefined) return DASH;
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB'];
    let v = Number(n);
    let i = 0;
    while (v >= 1024 && i < units.length - 1) {
      v /= 1024;
      i++;
    }
    if (i === 0) return `${v} B`;
    if (Number(v.toFixed(1)) >= 1024 && i < units.length - 1) {
      v /= 1024;
      i++;
    }
    return `${v.toFixed(1)} ${units[i]}`;
  }

  function fmtMs(ms) {
    if (ms === null || ms === undefined) return DASH;
    const n = Number(ms);
    if (n < 1000) return `${Math.round(n)} ms`;
    if (n < 59950) return `${(n / 1000).toFixed(1)} s`;
    const s = Math.round(n / 1000);
    if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
    const hr = Math.floor(s / 3600);
    if (hr < 24) return `${hr}h ${Math.floor((s % 3600) / 60)}m`;
    return `${Math.floor(hr / 24)}d ${hr % 24}h`;
  }

  const pad = (n, w) => String(n).padStart(w, '0');

  /** Local HH:MM:SS.mmm of ms since the epoch. */
  function fmtTime(ms) {
    if (ms === null || ms === undefined) return DASH;
    const d = new Date(Number(ms));
    return `${pad(d.getHours(), 2)}:${pad(d.getMinutes(), 2)}:${pad(d.getSeconds(), 2)}.${pad(d.getMilliseconds(), 3)}`;
  }

  function fmtClock(d) {
    return `${pad(d.getHours(), 2)}:${pad(d.getMinutes(), 2)}:${pad(d.getSeconds(), 2)}`;
  }

  function fmtNum(n) {
    return n === null || n === undefined ? DASH : String(n);
  }

  function pct(ratio) {
    if (!Number.isFinite(ratio)) return '';
    return `${Math.round(ratio * 100)}%`;
  }

  function levelOf(ratio) {
    if (ratio >= 1) return 'red';
    if (ratio >= 0.8) return 'amber';
    return 'green';
  }

  /** A grey track with a coloured fill of value / limit, clamped at 100%
   * (green below 80%, amber to 100%, red at or over). `opts.marker`: a
   * ratio of the track to mark (a soft limit); `opts.level` overrides the
   * colour. */
  function bar(value, limit, opts) {
    const o = opts || {};
    const ratio = limit > 0 ? value / limit : (value > 0 ? Infinity : 0);
    const fill = h('span', { class: `bar-fill ${o.level || levelOf(ratio)}` });
    fill.style.width = `${Math.min(100, Math.max(0, ratio * 100))}%`;
    const track = h('span', {
      class: `bar${o.wide ? ' bar-wide' : ''}${ratio > 1 ? ' bar-over' : ''}`,
      title: o.title || (limit > 0 ? pct(ratio) : null),
      role: 'presentation',
    }, fill);
    if (o.marker !== undefined && o.marker !== null && o.marker > 0 && o.marker < 1) {
      const m = h('span', { class: 'bar-marker' });
      m.style.left = `${o.marker * 100}%`;
      track.appendChild(m);
    }
    return track;
  }

  function badge(cls, text, title) {
    return h('span', { class: `badge ${cls}`, title }, text);
  }

  function stateBadge(state) {
    return badge(`state state-${state}`, state);
  }

  function modeBadge(mode, maxStaleness) {
    if (mode === 'eventual') {
      const text = maxStaleness === null || maxStaleness === undefined
        ? 'eventual' : `eventual \u2264 ${maxStaleness} ms`;
      return badge('mode mode-eventual', text,
        'Admitted by each coordinator from an RM view at most this stale');
    }
    if (mode === 'linearizable') {
      return badge('mode mode-linearizable', 'linearizable',
        "Admitted through the RMs' replicated log by the leader");
    }
    return DASH;
  }

  // -------------------------------------------------------------- pages

  const pages = {};

  // ---- #/cluster

  pages.cluster = {
    title: 'Cluster',
    api: () => 'api/cluster',
    mount() {},
    render(d) {
      const out = [];
      for (const b of d.banners) out.push(h('div', { class: 'banner', role: 'alert' }, b));
      for (const e of d.errors) out.push(h('div', { class: 'warning' }, e));
      out.push(rmSection(d));
      out.push(workersSection(d));
      out.push(coordinatorsSection(d));
      if (d.recent_kills.length) out.push(killsSection(d.recent_kills));
      main.replaceChildren(...out);
      return POLL_MS;
    },
  };

  function rmSection(d) {
    const c = d.cluster;
    const versionsDiffer = d.config_version !== null && d.rm_config_version !== null
      && d.config_version !== d.rm_config_version;
    const facts = h('div', { class: 'facts' },
      fact('Leader', h('strong', { id: 'leader-id', class: d.leader_id === null ? 'bad' : null },
        d.leader_id === null ? 'none' : String(d.leader_id))),
      fact('Term', h('span', { id: 'term' }, fmtNum(d.term))),
      d.staleness_bound_ms !== null
        ? fact('Staleness bound', h('span', {
          id: 'staleness-bound',
          title: "The tightest eventual group's bound: replicas staler than this cannot serve its view",
        }, `${d.staleness_bound_ms} ms`))
        : null,
      fact('Config version', h('span', { id: 'config-version', class: versionsDiffer ? 'warn-text' : null },
        `${fmtNum(d.config_version)} here \u00b7 ${fmtNum(d.rm_config_version)} on the RMs`)),
      c && c.cluster_id ? fact('Cluster id', h('code', null, c.cluster_id)) : null);

    const replicas = d.replicas.map((r) => {
      const hl = r.health;
      const role = hl ? hl.role : null;
      return h('tr', {
        data: { replica: r.addr },
        class: [r.error ? 'row-error' : '', role === 'leader' ? 'row-leader' : ''].join(' ').trim() || null,
      },
      td('addr', 'mono', r.addr),
      td('node', 'n', hl ? String(hl.node_id) : DASH),
      td('role', `role role-${role || 'unknown'}`,
        role === 'leader' ? h('strong', null, role) : (role || DASH)),
      td('term', 'n', hl ? String(hl.term) : DASH),
      td('last-log-index', 'n', hl ? fmtNum(hl.last_log_index) : DASH),
      td('last-applied', 'n', hl ? fmtNum(hl.last_applied) : DASH),
      td('leader-changes', 'n', hl && hl.leader_changes !== undefined ? String(hl.leader_changes) : DASH),
      td('staleness', `n${r.past_bound ? ' past-bound' : ''}`,
        hl && hl.staleness_ms !== null ? fmtMs(hl.staleness_ms) : DASH,
        r.past_bound ? h('span', { class: 'tag tag-bad', title: 'Past the tightest eventual bound' }, 'past bound') : null),
      td('error', 'error-text', r.error || ''));
    });

    const left = [h('h3', null, 'Replicas'),
      table('grid', ['Address', ['Node', 'n'], 'Role', ['Term', 'n'], ['Last log', 'n', 'Last log index'],
        ['Applied', 'n', 'Last applied index'],
        ['Leader changes', 'n', 'Leaders this replica has seen take over since it started'],
        ['Staleness', 'n'], 'Error'], replicas)];
    if (!d.replicas.length) left.push(note('No replicas configured.'));
    const grid = h('div', { class: 'rm-grid' }, h('div', null, left));

    if (c && c.members && c.members.length) {
      grid.appendChild(h('div', null,
        h('h3', null, `Membership, as node ${c.served_by} records it`),
        table('grid', [['Member', 'n'], 'Address', 'Kind', ['Matched index', 'n']],
          c.members.map((m) => h('tr', {
            data: { member: m.id },
            class: m.id === c.leader_id ? 'row-leader' : null,
          },
          td('id', 'n', m.id === c.leader_id ? h('strong', null, String(m.id)) : String(m.id)),
          td('addr', 'mono', m.addr),
          td('kind', null, m.voter ? 'voter' : 'learner'),
          td('matched', 'n', fmtNum(m.matched))))),
        h('div', { class: 'facts small below' },
          fact('Last log index', fmtNum(c.last_log_index)),
          fact('Applied', fmtNum(c.last_applied)),
          fact('Snapshot', fmtNum(c.snapshot_index)),
          fact('State digest', h('code', { title: 'Replicas at the same applied index must show the same digest' },
            c.state_digest)))));
    }
    const parts = [facts, grid];
    return section('Resource managers', parts);
  }

  function workersSection(d) {
    const total = d.memory_total_bytes;
    const reserved = d.memory_reserved_bytes;
    const ratio = total > 0 ? reserved / total : (reserved > 0 ? Infinity : 0);
    const summary = h('div', { class: 'memory-summary' },
      h('span', { class: 'fact-label' }, 'Cluster memory'), ' ',
      bar(reserved, total, { wide: true }), ' ',
      h('span', { id: 'cluster-memory' }, `${fmtBytes(reserved)} of ${fmtBytes(total)}`,
        total > 0 ? ` (${pct(ratio)})` : ''), ' ',
      d.out_of_memory
        ? h('span', { id: 'out-of-memory', class: 'tag tag-bad' }, 'out of memory')
        : h('span', { id: 'out-of-memory', class: 'tag tag-ok' }, 'memory ok'), ' ',
      h('span', { class: 'muted' }, `${d.workers.length} worker${d.workers.length === 1 ? '' : 's'}`));

    const rows = d.workers.map((w) => {
      const r = w.total_bytes > 0 ? w.reserved_bytes / w.total_bytes : 0;
      return h('tr', { data: { worker: w.node_id }, class: w.blocked ? 'row-error' : null },
        td('id', 'mono', w.node_id),
        td('addr', 'mono', w.addr || DASH),
        td('memory', 'memcell', bar(w.reserved_bytes, w.total_bytes), ' ',
          h('span', { class: 'bar-text' }, `${fmtBytes(w.reserved_bytes)} of ${fmtBytes(w.total_bytes)}`),
          r > 1 ? h('span', { class: 'tag tag-bad', title: 'Measured memory exceeds the pool' }, pct(r)) : null),
        td('blocked', w.blocked ? 'bad' : null,
          w.blocked ? `yes (${w.blocked_tasks} task${w.blocked_tasks === 1 ? '' : 's'})` : 'no'),
        td('running-tasks', 'n', String(w.running_tasks)),
        td('cpu', 'n', Number(w.cpu_cores).toFixed(1)),
        td('heartbeat', 'n', fmtMs(w.heartbeat_age_ms)));
    });
    const parts = [summary,
      table('grid', ['Worker', 'Address', 'Memory (reserved of pool)', 'Blocked',
        ['Running tasks', 'n'], ['CPU cores', 'n'], ['Heartbeat age', 'n']], rows)];
    if (!d.workers.length) parts.push(note('No live workers.'));
    return section('Workers', parts);
  }

  function coordinatorsSection(d) {
    const rows = d.coordinators.map((c) => h('tr', {
      data: { coordinator: c.name },
      class: [c.this ? 'row-this' : '', c.error ? 'row-error' : ''].join(' ').trim() || null,
    },
    td('name', 'mono', c.name, c.this ? h('span', { class: 'tag tag-this' }, 'this one') : null),
    td('addr', 'mono', c.addr || DASH),
    td('sessions', 'mono', c.sessions.length ? c.sessions.join(', ') : DASH),
    td('announced', 'n', c.announced_ms_ago === null ? DASH : `${fmtMs(c.announced_ms_ago)} ago`),
    td('queued', 'n', fmtNum(c.queued)),
    td('running', 'n', fmtNum(c.running)),
    td('held', 'n', fmtNum(c.held)),
    td('ledger-queued', 'n', String(c.ledger_queued)),
    td('ledger-running', 'n', String(c.ledger_running)),
    td('error', 'error-text', c.error || '')));
    const parts = [table('grid', ['Name', 'Address', 'Sessions', ['Announced', 'n'],
      ['Queued', 'n'], ['Running', 'n'], ['Held', 'n', 'Queries it holds (admitted, holding a slot)'],
      ['Ledger queued', 'n', "Its linearizable queries in the RMs' ledger"],
      ['Ledger running', 'n', "Its linearizable queries in the RMs' ledger"], 'Error'], rows)];
    if (!d.coordinators.length) parts.push(note('No coordinator has a live session or announcement.'));
    return section('Coordinators', parts);
  }

  function killsSection(kills) {
    return section('Recent memory kills',
      table('grid', ['Query', 'Reason', 'Error', 'Outcome', 'Decided', 'Message'],
        kills.map((k) => h('tr', { data: { kill: k.decision } },
          td('query', 'mono', queryLink(k.query_id)),
          td('reason', null, k.reason),
          td('error-name', 'mono', k.error_name),
          td('outcome', `outcome-${k.outcome}`, k.outcome),
          td('decided', 'mono', fmtTime(k.decided_ms)),
          td('message', 'muted', k.message)))));
  }

  // ---- #/groups

  pages.groups = {
    title: 'Resource groups',
    api: () => 'api/groups',
    mount() {},
    render(d) {
      const out = [];
      const head = h('div', { class: 'facts' },
        fact('Counts from RM', h('span', { id: 'served-by', class: d.served_by === null ? 'bad' : null },
          d.served_by === null ? 'none' : `node ${d.served_by}`)),
        fact('View staleness', h('span', { id: 'view-staleness' }, fmtMs(d.view_staleness_ms))),
        fact('Config version', h('span', { id: 'config-version' }, fmtNum(d.config_version))),
        fact('Groups', String(d.groups.length)));
      out.push(head);
      if (d.decisions_missing.length) {
        out.push(h('div', { class: 'warning' },
          `Decisions not counted from ${d.decisions_missing.join(', ')} (did not answer)`));
      }
      for (const e of d.errors) out.push(h('div', { class: 'warning' }, e));

      const legend = h('p', { class: 'legend' },
        modeBadge('linearizable'), ' each admission goes through the RMs\u2019 replicated log: counts are exact, a query waits on the leader. ',
        modeBadge('eventual', 'N'), ' each coordinator admits from an RM view at most N ms stale: no round trip, limits may be overshot briefly.');

      const rows = d.groups.map(groupRow);
      const parts = [legend,
        table('grid groups', ['Group', 'Mode', 'State', 'Running', 'Queued', 'Memory', 'CPU',
          ['Decisions', null, 'Admissions and rejections in the last minute, by every coordinator that answered'],
          ['This coordinator\u2019s view', null, 'Eventual groups: the view this coordinator decides on'], ''], rows)];
      if (!d.groups.length) parts.push(note('No resource groups.'));
      out.push(section('Resource groups', parts));
      main.replaceChildren(...out);
      return POLL_MS;
    },
  };

  function groupRow(g) {
    const segment = g.id.split('.').pop();
    const idCell = td('id', 'gid', h('span', { class: 'gname', title: g.id }, segment));
    idCell.title = g.id;
    idCell.style.paddingLeft = `${8 + g.depth * 18}px`;

    const runningCell = td('running', 'barcell',
      h('span', { class: 'num' }, String(g.running)),
      h('span', { class: 'of' }, ` / ${g.running_limit}`),
      bar(g.running, g.running_limit),
      g.running_limit < g.hard_concurrency_limit
        ? h('div', { class: 'sub warn-text' }, `(CPU penalty: hard ${g.hard_concurrency_limit})`)
        : null);

    const queuedCell = td('queued', 'barcell',
      h('span', { class: 'num' }, String(g.queued)),
      h('span', { class: 'of' }, ` / ${g.max_queued}`),
      bar(g.queued, g.max_queued));

    let memoryCell;
    if (g.soft_memory_limit_bytes !== null) {
      memoryCell = td('memory', 'barcell',
        h('span', { class: 'num' }, fmtBytes(g.memory_bytes)),
        h('span', { class: 'of' }, ` / ${fmtBytes(g.soft_memory_limit_bytes)}`),
        bar(g.memory_bytes, g.soft_memory_limit_bytes, { title: 'of the soft memory limit' }));
    } else {
      memoryCell = td('memory', null, h('span', { class: 'num' }, fmtBytes(g.memory_bytes)));
    }

    const soft = g.soft_cpu_limit_ms;
    const hard = g.hard_cpu_limit_ms;
    let cpuCell;
    if (soft !== null || hard !== null) {
      const limit = hard !== null ? hard : soft;
      let level;
      if (soft !== null && hard !== null) {
        level = g.cpu_ms >= hard ? 'red' : (g.cpu_ms >= soft ? 'amber' : 'green');
      }
      const limits = [soft !== null ? `soft ${fmtMs(soft)}` : null, hard !== null ? `hard ${fmtMs(hard)}` : null]
        .filter(Boolean).join(' \u00b7 ');
      cpuCell = td('cpu', 'barcell',
        h('span', { class: 'num' }, fmtMs(g.cpu_ms)),
        bar(g.cpu_ms, limit, {
          level,
          marker: soft !== null && hard !== null && hard > 0 ? soft / hard : null,
          title: limits,
        }),
        h('div', { class: 'sub' }, limits));
    } else {
      cpuCell = td('cpu', null, h('span', { class: 'num' }, fmtMs(g.cpu_ms)));
    }

    const rateCell = td('rate', null,
      h('span', { class: 'part' },
        h('span', { class: 'num' }, String(g.admitted_last_minute)), ' admitted /'), ' ',
      h('span', { class: 'part' },
        h('span', { class: g.rejected_last_minute > 0 ? 'num bad' : 'num' }, String(g.rejected_last_minute)),
        ' rejected per min'));

    let viewCell;
    const v = g.decision_view;
    if (g.mode === 'eventual' && v) {
      const tooStale = g.max_staleness_ms !== null && v.staleness_ms > g.max_staleness_ms;
      viewCell = td('view', null, `this coordinator sees ${v.running} running, ${v.queued} queued, `,
        h('span', { class: tooStale ? 'bad' : null }, `${fmtMs(v.staleness_ms)} stale`));
    } else {
      viewCell = td('view', 'muted', DASH);
    }

    const path = g.id.split('.').map(encodeURIComponent).join('/');
    return h('tr', {
      data: { group: g.id },
      class: `${g.leaf ? 'leaf' : 'inner'}${g.draining ? ' draining' : ''} group-${g.mode}`,
    },
    idCell,
    td('mode', null, modeBadge(g.mode, g.max_staleness_ms),
      g.draining ? h('span', { class: 'tag tag-draining', title: 'Gone from the configuration; kept until its queries end' }, 'draining') : null),
    td('state', null, h('span', { class: `gstate gstate-${g.state}` }, g.state)),
    runningCell, queuedCell, memoryCell, cpuCell, rateCell, viewCell,
    td('links', null, link(`/v1/resourceGroupState/${path}`, 'JSON', "Trino's resource group state")));
  }

  // ---- #/queries

  // Kept across refreshes and across visits to other pages.
  const filters = { state: '', group: '', user: '', coordinator: '' };
  let queriesData = null;

  pages.queries = {
    title: 'Queries',
    api: () => 'api/queries',
    mount() {
      queriesData = null;
      this.stateSel = h('select', { id: 'filter-state', name: 'state' },
        h('option', { value: '' }, 'All'), STATES.map((s) => h('option', { value: s }, s)));
      this.groupSel = h('select', { id: 'filter-group', name: 'group' }, h('option', { value: '' }, 'All'));
      this.userInput = h('input', {
        id: 'filter-user', name: 'user', type: 'search', placeholder: 'substring', autocomplete: 'off', spellcheck: 'false',
      });
      this.coordSel = h('select', { id: 'filter-coordinator', name: 'coordinator' }, h('option', { value: '' }, 'All'));
      syncOptions(this.groupSel, [], filters.group);
      syncOptions(this.coordSel, [], filters.coordinator);
      this.stateSel.value = filters.state;
      this.userInput.value = filters.user;
      const changed = () => {
        filters.state = this.stateSel.value;
        filters.group = this.groupSel.value;
        filters.user = this.userInput.value;
        filters.coordinator = this.coordSel.value;
        if (queriesData) {
          this.renderResults(queriesData);
          rendered('queries');
        }
      };
      for (const el of [this.stateSel, this.groupSel, this.coordSel]) el.addEventListener('change', changed);
      for (const ev of ['input', 'change']) this.userInput.addEventListener(ev, changed);
      this.count = h('span', { id: 'query-count', class: 'count' });
      this.warnings = h('div');
      this.results = h('div', { class: 'results' }, h('p', { class: 'loading' }, 'Loading\u2026'));
      const bar_ = h('div', { class: 'filters' },
        h('label', { for: 'filter-state' }, 'State '), this.stateSel,
        h('label', { for: 'filter-group' }, 'Group '), this.groupSel,
        h('label', { for: 'filter-user' }, 'User '), this.userInput,
        h('label', { for: 'filter-coordinator' }, 'Coordinator '), this.coordSel,
        this.count);
      main.replaceChildren(this.warnings, h('section', { class: 'card' }, h('h2', null, 'Queries'), bar_, this.results));
    },
    render(d) {
      queriesData = d;
      const w = [];
      if (d.unreachable.length) {
        w.push(h('div', { class: 'warning' },
          `Did not answer: ${d.unreachable.join(', ')} \u2014 their queries are shown from the RMs\u2019 ledger (in italics)`));
      }
      for (const e of d.errors) w.push(h('div', { class: 'warning' }, e));
      this.warnings.replaceChildren(...w);
      const groups = new Set();
      let ungrouped = false;
      const coords = new Set();
      for (const q of d.queries) {
        if (q.group === null) ungrouped = true;
        else groups.add(q.group);
        coords.add(q.coordinator);
      }
      const groupOpts = [...groups].sort().map((g) => [g, g]);
      if (ungrouped) groupOpts.push([NO_GROUP, '(no group)']);
      syncOptions(this.groupSel, groupOpts, filters.group);
      syncOptions(this.coordSel, [...coords].sort().map((c) => [c, c]), filters.coordinator);
      this.renderResults(d);
      return POLL_MS;
    },
    renderResults(d) {
      const user = filters.user.trim().toLowerCase();
      const shown = d.queries.filter((q) =>
        (!filters.state || q.state === filters.state)
        && (!filters.group || (filters.group === NO_GROUP ? q.group === null : q.group === filters.group))
        && (!filters.coordinator || q.coordinator === filters.coordinator)
        && (!user || q.user.toLowerCase().includes(user)));
      const n = d.queries.length;
      this.count.textContent = `${n} quer${n === 1 ? 'y' : 'ies'} (${shown.length} shown)`;
      const rows = shown.map((q) => h('tr', {
        data: { query: q.query_id },
        class: q.origin === 'ledger' ? 'origin-ledger' : null,
        title: q.origin === 'ledger' ? "From the RMs' ledger: its coordinator did not answer" : null,
      },
      td('id', 'mono', queryLink(q.query_id)),
      td('state', null, stateBadge(q.state)),
      td('group', 'mono', q.group === null ? DASH : clip(q.group)),
      td('mode', null, q.mode === null ? DASH : badge(`mode mode-${q.mode}`, q.mode)),
      td('user', null, clip(q.user)),
      td('source', null, q.source === null || q.source === undefined ? DASH : clip(q.source)),
      td('coordinator', 'mono', clip(q.coordinator)),
      td('origin', null, q.origin),
      td('created', 'mono', fmtTime(q.created_ms)),
      td('elapsed', 'n', fmtMs(q.elapsed_ms)),
      td('memory', 'n', q.reserved_bytes != null
        ? h('span', { title: "Held now, by the RMs' memory view (the peak is known once the query ends)" }, fmtBytes(q.reserved_bytes))
        : fmtBytes(q.peak_memory_bytes)),
      td('cpu', 'n', fmtMs(q.cpu_ms)),
      td('sql', 'sql', h('span', { class: 'clip sql-head', title: q.sql_head }, q.sql_head)),
      td('error', 'error-text mono', q.error_name ? clip(q.error_name) : '')));
      const parts = [table('grid queries',
        ['Query', 'State', 'Group', 'Mode', 'User', ['Source', null, "The client's source"], 'Coordinator',
          ['From', null, "The coordinator's own account, or the RMs' ledger where it did not answer"], 'Created',
          ['Elapsed', 'n'], ['Memory', 'n', 'Held now while the workers hold some, else the peak'], ['CPU', 'n'], 'SQL', 'Error'], rows)];
      if (!n) parts.push(note('No queries.'));
      else if (!shown.length) parts.push(note('No query matches the filters.'));
      this.results.replaceChildren(...parts);
    },
  };

  /** Makes `sel`'s options All + `opts` ([value, label]) without losing its
   * choice: a chosen value no longer present stays as an option. */
  function syncOptions(sel, opts, chosen) {
    const want = [['', 'All'], ...opts];
    if (chosen && !want.some(([v]) => v === chosen)) {
      want.push([chosen, chosen === NO_GROUP ? '(no group)' : chosen]);
    }
    const have = [...sel.options].map((o) => [o.value, o.textContent]);
    const same = have.length === want.length && have.every(([v, t], i) => v === want[i][0] && t === want[i][1]);
    if (!same) {
      sel.replaceChildren(...want.map(([v, t]) => h('option', { value: v }, t)));
    }
    if (sel.value !== chosen) sel.value = chosen;
  }

  // ---- #/query/<id>

  pages.query = {
    title: 'Query',
    api: (r) => `api/query/${encodeURIComponent(r.id)}`,
    mount() {},
    render(p, route) {
      const det = p.detail;
      const s = det ? det.summary : null;
      const l = p.ledger;
      const out = [];

      let state = DASH;
      if (s) state = s.state;
      else if (l) state = l.status.toUpperCase();
      const fencing = det ? det.fencing_token : (l ? l.fencing_token : null);

      out.push(h('div', { class: 'query-head' },
        h('h2', null, 'Query ', h('code', { id: 'query-id' }, s ? s.query_id : (l ? l.query_id : route.id))),
        h('span', { id: 'query-state', class: `badge state state-${state}` }, state),
        s && s.mode ? modeBadge(s.mode) : null,
        h('span', { class: 'spacer' }),
        link(`/v1/query/${encodeURIComponent(route.id)}`, 'JSON', "Trino's query info"),
        h('span', { class: 'muted small' }, ' (Trino\u2019s own, only meaningful on the owner coordinator) \u00b7 '),
        link('#/queries', '\u2190 All queries')));

      const proxied = p.proxied_via;
      out.push(h('p', { class: 'prose' },
        'Served by coordinator ', h('strong', null, p.coordinator), '; ',
        proxied !== null
          ? ['the owner\u2019s answer came through RM ', h('code', { id: 'query-proxied-via' }, proxied), '.']
          : [h('span', { id: 'query-proxied-via' }, 'not proxied'), ' through an RM',
            p.owner !== null && p.owner === p.coordinator ? ' (this coordinator is the owner).' : '.']));

      if (!det) {
        out.push(h('div', { class: 'owner-error', role: 'alert' },
          h('strong', null, 'The owner\u2019s account is missing'),
          p.owner_error ? [': ', p.owner_error] : '.',
          l ? h('div', { class: 'sub' }, 'What follows is what the RMs know, from their ledger.') : null));
      }

      let error = DASH;
      if (det && det.error) error = `${det.error.error_name}: ${det.error.message}`;
      else if (s && s.error_name) error = s.error_name;

      const dl = h('dl', { class: 'kv' },
        kv('Owner', h('span', { id: 'query-owner' }, p.owner || 'unknown')),
        kv('Group', h('span', { id: 'query-group', class: 'mono' },
          s ? (s.group === null ? DASH : s.group) : (l ? l.group : DASH))),
        kv('User', h('span', { id: 'query-user' }, s ? s.user : (l && l.user !== null ? l.user : DASH))),
        kv('Source', s && s.source !== null ? s.source : DASH),
        kv('Worker', h('span', { id: 'query-worker', class: 'mono' }, s && s.worker !== null ? s.worker : DASH)),
        kv('Fencing token', h('span', { id: 'query-fencing-token', class: 'mono' }, fmtNum(fencing))),
        kv('Created', s ? fmtTime(s.created_ms) : DASH),
        kv('Queued for', s ? fmtMs(s.queued_ms) : DASH),
        kv('Elapsed', s ? fmtMs(s.elapsed_ms) : DASH),
        kv('Peak memory', h('span', { id: 'query-memory' }, s ? fmtBytes(s.peak_memory_bytes) : DASH)),
        kv('Memory now', h('span', {
          id: 'query-reserved',
          title: "What the workers hold for it now, summed, by the RMs' memory view",
        }, p.reserved_bytes === null || p.reserved_bytes === undefined ? DASH : fmtBytes(p.reserved_bytes))),
        kv('CPU', h('span', { id: 'query-cpu' }, s ? fmtMs(s.cpu_ms) : DASH)),
        kv('Error', h('span', { id: 'query-error', class: error !== DASH ? 'error-text' : null }, error)));

      const sql = det ? det.sql : (l && l.sql !== null ? l.sql : DASH);
      const timeline = h('ol', { id: 'query-timeline', class: 'timeline' });
      if (det) {
        let prev = null;
        for (const st of det.timeline) {
          timeline.appendChild(h('li', { data: { step: st.step }, class: `step-${st.step}` },
            h('span', { class: 'step' }, st.step),
            h('span', { class: 'time mono' }, fmtTime(st.at_ms)),
            h('span', { class: 'delta' }, prev === null ? 'start' : `+${fmtMs(Math.max(0, st.at_ms - prev))}`)));
          prev = st.at_ms;
        }
      }

      out.push(h('div', { class: 'query-grid' },
        section('Summary', dl),
        section('Timeline', timeline,
          det ? (det.timeline.length ? null : note('No steps yet.'))
            : note('Unknown: the owner did not answer.'))));
      out.push(section('Statement', h('pre', { id: 'query-sql', class: 'sql-full' }, sql)));

      if (l) {
        out.push(section('What the RMs know',
          h('dl', { class: 'kv', id: 'query-ledger' },
            kv('Status', h('span', { class: `badge state state-${l.status.toUpperCase()}` }, l.status)),
            kv('Group', h('span', { class: 'mono' }, l.group)),
            kv('Coordinator', h('span', { class: 'mono' }, l.coordinator)),
            kv('Session', h('span', { class: 'mono' }, String(l.session))),
            kv('Session alive', l.session_alive
              ? 'yes'
              : h('span', { class: 'bad' }, 'no \u2014 the query waits for adoption')),
            kv('Fencing token', h('span', { class: 'mono' }, fmtNum(l.fencing_token))),
            kv('User', l.user !== null ? l.user : DASH)),
          det ? h('pre', { class: 'sql-full small' }, l.sql !== null ? l.sql : DASH) : null));
      } else if (!det) {
        out.push(note('The RMs\u2019 ledger holds no entry for it (it keeps queued and running linearizable queries).'));
      }

      main.replaceChildren(...out);
      const live = s ? ['QUEUED', 'RUNNING', 'FINISHING'].includes(s.state)
        : (l ? l.status !== 'finished' : false);
      return live ? POLL_MS : SLOW_POLL_MS;
    },
    renderMissing(body, route) {
      main.replaceChildren(
        h('section', { class: 'card missing' },
          h('h2', { id: 'query-missing' }, 'No query ', h('code', { id: 'query-id' }, route.id),
            ' is known to this cluster'),
          body && body.error ? note(body.error) : null,
          h('p', null, link('#/queries', '\u2190 All queries'))));
      return SLOW_POLL_MS;
    },
  };

  function kv(label, ...value) {
    return [h('dt', null, label), h('dd', null, value)];
  }

  // ------------------------------------------------------------ routing

  const main = document.getElementById('main');
  const errorLine = document.getElementById('fetch-error');
  const footer = document.getElementById('footer');
  const navLinks = document.querySelectorAll('nav a[data-nav]');

  function parseRoute() {
    const raw = location.hash.replace(/^#\/?/, '');
    const slash = raw.indexOf('/');
    const head = slash < 0 ? raw : raw.slice(0, slash);
    const rest = slash < 0 ? '' : raw.slice(slash + 1);
    if (head === 'cluster' && !rest) return { page: 'cluster' };
    if (head === 'groups' && !rest) return { page: 'groups' };
    if (head === 'queries' && !rest) return { page: 'queries' };
    if (head === 'query') {
      if (!rest) return { page: 'queries', redirect: '#/queries' };
      let id = rest;
      try {
        id = decodeURIComponent(rest);
      } catch (e) {
        // Not percent-encoded after all: the id as written.
      }
      return { page: 'query', id };
    }
    return { page: 'cluster', redirect: '#/cluster' };
  }

  let generation = 0;
  let timer = null;
  let controller = null;
  let lastOk = null;
  let lastCoordinator = null;
  let lastBody = null;

  function rendered(page) {
    document.body.dataset.page = page;
    document.body.dataset.renders = String((Number(document.body.dataset.renders) || 0) + 1);
  }

  function showError(msg) {
    if (!msg) {
      errorLine.hidden = true;
      errorLine.replaceChildren();
      return;
    }
    errorLine.replaceChildren(msg,
      lastOk ? h('span', { class: 'muted' }, ` \u2014 showing data from ${fmtClock(lastOk)}; retrying`) : ' \u2014 retrying');
    errorLine.hidden = false;
  }

  function setFooter(route, api) {
    const url = new URL(api, location.href);
    footer.replaceChildren(
      'Coordinator ', h('strong', { id: 'footer-coordinator' }, lastCoordinator || DASH),
      ' \u00b7 updated ', h('span', { id: 'footer-updated' }, lastOk ? fmtClock(lastOk) : DASH),
      ' \u00b7 ', link(api, url.pathname, 'This page\u2019s data as JSON'));
  }

  function start() {
    const route = parseRoute();
    if (route.redirect && location.hash !== route.redirect) {
      history.replaceState(null, '', route.redirect);
    }
    generation++;
    const gen = generation;
    clearTimeout(timer);
    timer = null;
    if (controller) controller.abort();
    controller = null;
    lastBody = null;
    lastOk = null;
    const page = pages[route.page];
    document.title = `raft-rm \u00b7 ${page.title}${route.id ? ` ${route.id}` : ''}`;
    for (const a of navLinks) {
      const on = a.dataset.nav === (route.page === 'query' ? 'queries' : route.page);
      a.classList.toggle('active', on);
      if (on) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
    main.replaceChildren(h('p', { class: 'loading' }, 'Loading\u2026'));
    page.mount();
    setFooter(route, page.api(route));
    poll(gen, route, page);
  }

  async function poll(gen, route, page) {
    const api = page.api(route);
    const ctl = new AbortController();
    controller = ctl;
    let next = POLL_MS;
    try {
      const res = await fetch(api, {
        signal: ctl.signal, cache: 'no-store', headers: { Accept: 'application/json' },
      });
      const text = await res.text();
      if (gen !== generation) return;
      let body = null;
      try {
        body = text ? JSON.parse(text) : null;
      } catch (e) {
        body = null;
      }
      if (res.ok && body && typeof body === 'object') {
        if (text === lastBody) {
          // Nothing changed: keep the DOM (and any text selection in it).
          next = page.lastNext || POLL_MS;
        } else {
          try {
            next = page.render(body, route);
          } catch (e) {
            lastBody = null;
            throw new Error(`cannot show its answer (${e && e.message ? e.message : e})`);
          }
          page.lastNext = next;
          lastBody = text;
        }
        lastOk = new Date();
        if (typeof body.coordinator === 'string') lastCoordinator = body.coordinator;
        showError(null);
        setFooter(route, api);
        rendered(route.page);
      } else if (res.status === 404 && route.page === 'query') {
        lastOk = new Date();
        lastBody = null;
        next = page.renderMissing(body, route);
        showError(null);
        setFooter(route, api);
        rendered(route.page);
      } else {
        const why = body && typeof body.error === 'string' ? body.error : (res.statusText || 'no answer');
        showError(`Could not load ${new URL(api, location.href).pathname}: HTTP ${res.status}: ${why}`);
      }
    } catch (e) {
      if (gen !== generation) return; // aborted by a page change
      const why = e && e.message ? e.message : String(e);
      showError(`Could not load ${new URL(api, location.href).pathname}: ${why}`);
    } finally {
      if (controller === ctl) controller = null;
    }
    if (gen !== generation) return;
    timer = setTimeout(() => poll(gen, route, page), next);
  }

  document.body.dataset.renders = document.body.dataset.renders || '0';
  window.addEventListener('hashchange', start);
  start();
})();
