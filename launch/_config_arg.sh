# Shared by launch/*.sh (sourced): the CONFIG and key=value arguments, and the rule that the
# config lives inside this checkout (it travels as the job's working directory or the image).

# positional SCRIPT ARG: ARG is the config (first one) or a key=value override.
positional() {
  case "$2" in
    *=*) overrides+=("$2") ;;
    *)
      if [[ -n "$config" ]]; then
        echo "$1: one CONFIG only (got '$config' and '$2'); overrides are key=value" >&2
        exit 2
      fi
      config="$2" ;;
  esac
}

# config_in_checkout SCRIPT: make $config relative to the checkout root and cd there.
config_in_checkout() {
  local root
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  if [[ -f "$config" && "$config" != /* ]]; then
    config="$(cd "$(dirname "$config")" && pwd)/$(basename "$config")"
  fi
  case "$config" in
    "$root"/*) config="${config#"$root"/}" ;;
    /*) echo "$1: CONFIG must be inside this checkout ($root)" >&2; exit 2 ;;
  esac
  cd "$root"
  [[ -f "$config" ]] || { echo "$1: config file not found: $config" >&2; exit 2; }
}
