#!/bin/sh
# make-secrets.sh: make the files kustomization.yaml turns into Secrets,
# with OpenSSL, for a provider DOMAIN of REPLICAS nodes.
#
#   deploy/kubernetes/make-secrets.sh [DOMAIN [REPLICAS [DIR]]]
#
# Defaults: a.example, 3, secrets/ beside this script. It makes:
#   cluster-ca.crt/.key    a CA dedicated to this cluster (keep the key offline)
#   mimi-hub-N.crt/.key    each node's certificate from it (N = pod ordinal)
#   peer-ca.crt/.key       a development CA for provider certificates
#   provider.crt/.key      the provider's certificate: DNS name DOMAIN only
#   gossip.key             32 random bytes, base64
#   admin-token            the operator API's bearer token
# For a real provider, replace peer-ca.crt with the roots that verify
# your peers and provider.crt/.key with a certificate from a CA they trust.
# Existing files are kept, so running it again after raising REPLICAS only
# adds the new nodes' certificates.
set -eu
domain=${1:-a.example}
replicas=${2:-3}
dir=${3:-$(cd "$(dirname "$0")" && pwd)/secrets}
mkdir -p "$dir"
cd "$dir"
umask 077

ca() { # NAME SUBJECT
	[ -f "$1.crt" ] && return
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 -subj "/CN=$2" \
		-addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
		-keyout "$1.key" -out "$1.crt" 2>/dev/null
}

leaf() { # NAME CA DNSNAME
	[ -f "$1.crt" ] && return
	openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$3" \
		-keyout "$1.key" -out "$1.csr" 2>/dev/null
	printf 'subjectAltName=DNS:%s\nextendedKeyUsage=serverAuth,clientAuth\nkeyUsage=critical,digitalSignature\nbasicConstraints=critical,CA:FALSE\n' "$3" >"$1.ext"
	openssl x509 -req -in "$1.csr" -CA "$2.crt" -CAkey "$2.key" -CAcreateserial -days 825 \
		-extfile "$1.ext" -out "$1.crt" 2>/dev/null
	rm -f "$1.csr" "$1.ext"
}

ca cluster-ca "$domain cluster CA"
i=0
while [ "$i" -lt "$replicas" ]; do
	leaf "mimi-hub-$i" cluster-ca "mimi-hub-$i.cluster.$domain"
	i=$((i + 1))
done
ca peer-ca "$domain development provider CA"
leaf provider peer-ca "$domain"
[ -f gossip.key ] || head -c 32 /dev/urandom | base64 >gossip.key
[ -f admin-token ] || head -c 24 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n' >admin-token
rm -f ./*.srl
echo "secrets for $domain ($replicas nodes) in $dir"
